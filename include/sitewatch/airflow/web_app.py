"""The web app (``sitewatch.web.app``) as the Airflow plugin mounts it, on Airflow's own pieces.

``AIRFLOW_HOST`` is what only Airflow knows: the caller, from Airflow's ``get_user`` (a Bearer JWT
or the UI's ``_token`` cookie); what they may read, from the auth manager; its login page; the
UI's base path (``[api] base_url``); and the results database and Kafka through Airflow
connections. The API server's modules are imported when first used: this module is imported by
the plugin on the app's first request, and by tests that never start an API server.
"""

from __future__ import annotations

from urllib.parse import urlparse

from airflow.configuration import conf
from fastapi import FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials

from sitewatch.airflow.hooks import drain_lag_reader, results_connection
from sitewatch.names import POSTGRES_READER_CONN_ID
from sitewatch.web import app
from sitewatch.web.host import Host


def reader_connection():
    """The page's connection: read-only role ``sitewatch_postgres_reader``, else the owner's."""
    return results_connection(POSTGRES_READER_CONN_ID)


async def current_user(request: Request, bearer: HTTPAuthorizationCredentials | None):
    """The Airflow user of this request; raises HTTPException (401, 403) without a valid one."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, bearer)


def may_read_dag(user, dag_id: str | None) -> bool:
    """Whether Airflow's auth manager lets ``user`` read DAG ``dag_id`` (None: every DAG)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    details = DagDetails(id=dag_id) if dag_id else None
    return get_auth_manager().is_authorized_dag(method="GET", user=user, details=details)


def login_url(next_url: str) -> str:
    """The auth manager's login page, returning to ``next_url``."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


def ui_base() -> str:
    """The path of the UI's ``[api] base_url``, without a trailing slash."""
    return urlparse(conf.get("api", "base_url", fallback="/")).path.rstrip("/")


AIRFLOW_HOST = Host(
    connect=reader_connection,
    user=current_user,
    may_read=may_read_dag,
    login_url=login_url,
    ui_base=ui_base,
    lag_reader=drain_lag_reader,
)


def create_app() -> FastAPI:
    """The dashboard's app, served by Airflow's API server behind Airflow's login."""
    return app.create_app(AIRFLOW_HOST)
