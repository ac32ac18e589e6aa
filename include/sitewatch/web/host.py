"""What the web app needs from the platform that serves it, handed in rather than imported.

The app reads storage and the sites file itself; who the caller is, what they may read, where
the results database and the Kafka lag are, and the UI's base path are Airflow's to say. The
Airflow glue (``sitewatch.airflow.web_app``) fills a ``Host`` with Airflow's own pieces; tests
replace single fields with ``dataclasses.replace``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials

from sitewatch.pipeline.lag import LagReader


@dataclass(frozen=True)
class Host:
    """The platform's side of the web app.

    connect: a new connection to the results database, as the read-only role where one is set
    up (the app closes it). user: the caller of a request from its Bearer credentials (None:
    none sent) or its cookie; raises fastapi's HTTPException (401 or 403) when there is none or
    it is not valid. may_read: whether that user may read the DAG with this id, or every DAG
    (None). login_url: the login page, returning to the URL given after it. ui_base: the UI's
    base path, without a trailing slash, for the links that leave the app. lag_reader: a new
    reader of the drain group's Kafka lag (kept by the app between scrapes).
    """

    connect: Callable[[], Any]
    user: Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Any]]
    may_read: Callable[[Any, str | None], bool]
    login_url: Callable[[str], str]
    ui_base: Callable[[], str]
    lag_reader: Callable[[], LagReader]
