"""scripts/dev.sh refuses an executor or worker count it does not know, before starting anything;
it serves the published status pages (as make run does) until ``stop``."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parents[2]


def dev(tmp_path: Path, command: str, **settings: str) -> subprocess.CompletedProcess:
    """``dev.sh command`` on a private state directory with ``settings`` in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEWATCH_")}
    env.update(SITEWATCH_STATE_DIR=str(tmp_path / "state"), **settings)
    return subprocess.run(
        [ROOT / "scripts" / "dev.sh", command], env=env, capture_output=True, text=True, timeout=60
    )


def dev_env(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    """``dev.sh env`` on an empty private state directory with ``settings`` in its environment."""
    return dev(tmp_path, "env", **settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"SITEWATCH_EXECUTOR": "kubernetes"}, "SITEWATCH_EXECUTOR must be 'local' "),
        ({"SITEWATCH_EXECUTOR": "Celery"}, "or 'celery', not 'Celery'"),
        ({"SITEWATCH_EXECUTOR": "celery", "SITEWATCH_WORKERS": "0"}, "SITEWATCH_WORKERS must be"),
        ({"SITEWATCH_WORKERS": "two"}, "a whole number from 1 to 999, not 'two'"),
        ({"SITEWATCH_SCHEDULERS": "0"}, "SITEWATCH_SCHEDULERS must be a whole number from 1 to 9"),
        ({"SITEWATCH_SCHEDULERS": "10"}, "from 1 to 9, not '10'"),
    ],
)
def test_an_unknown_setting_stops_the_script_with_its_name(tmp_path, settings, message):
    done = dev_env(tmp_path, **settings)
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started or written


def test_the_status_pages_are_served_on_their_port_until_stop(tmp_path):
    (port,) = free_ports(1)
    pages = tmp_path / "state" / "status-pages" / "examples"
    pages.mkdir(parents=True)
    (pages / "index.html").write_text("<!doctype html><title>Example</title>")
    url = f"http://localhost:{port}/"
    try:
        started = dev(tmp_path, "serve", SITEWATCH_STATUS_PORT=str(port))
        assert started.returncode == 0, started.stderr
        assert f"status pages: {url} " in started.stderr
        with urllib.request.urlopen(f"{url}examples/", timeout=10) as reply:
            assert reply.read() == b"<!doctype html><title>Example</title>"
        pid = (tmp_path / "state" / "status-server" / "pid").read_text()
        again = dev(tmp_path, "serve", SITEWATCH_STATUS_PORT=str(port))  # idempotent
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "state" / "status-server" / "pid").read_text() == pid
    finally:
        stopped = dev(tmp_path, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "status page server stopped" in stopped.stderr
    assert not (tmp_path / "state" / "status-server" / "pid").exists()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 5):
        pass


def test_a_taken_status_port_stops_the_start_with_its_variable(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = dev(tmp_path, "serve", SITEWATCH_STATUS_PORT=str(port))
    assert done.returncode == 1
    assert f"port {port} is already in use" in done.stderr
    assert "set SITEWATCH_STATUS_PORT to a free port" in done.stderr
