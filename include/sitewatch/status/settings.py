"""Where the status pages are published: ``SITEWATCH_STATUS_PAGE_URL`` (README, "Settings")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sitewatch.errors import SettingError

URL_VAR = "SITEWATCH_STATUS_PAGE_URL"
STATE_DIR_VAR = "SITEWATCH_STATE_DIR"


def default_url(environ: Mapping[str, str] = os.environ) -> str:
    """``file://<state dir>/status-pages``: the state dir is ``$SITEWATCH_STATE_DIR``, else
    ``.state`` in the project, as ``scripts/dev.sh`` keeps it."""
    state = environ.get(STATE_DIR_VAR) or str(Path(__file__).resolve().parents[3] / ".state")
    return Path(state).resolve().joinpath("status-pages").as_uri()


def target_url(environ: Mapping[str, str] = os.environ) -> str:
    """The folder pages are published to, as a URL any fsspec file system reads: ``file:///srv/
    status``, ``s3://bucket/status``, ``s3://aws_conn@bucket/status`` (an Airflow connection
    before the ``@``), ``memory://status``. Unset or empty: ``default_url``. Raises
    SettingError for a value without a scheme."""
    value = (environ.get(URL_VAR) or "").strip()
    if not value:
        return default_url(environ)
    scheme, sep, rest = value.partition("://")
    if not sep or not scheme or not rest.strip("/"):
        raise SettingError(
            f"{URL_VAR}={value!r}: expected a URL of a folder like file:///srv/status or"
            " s3://bucket/status"
        )
    return value.rstrip("/")
