"""How long the UI takes to answer on a running bench stack (issue 30: usable at 10,000 sites).

    python bench/ui_timing.py STATE [--runs 3]

Against the stack whose state folder is STATE (``bench/sustained.py --keep``), as the admin with
an API token: the DAG list as the UI's first page asks for it (50 DAGs, the newest runs of each),
one site's DAG with its runs, the Sites page (its HTML and its rows) and one site's page. Each
request ``--runs`` times, the median and the slowest printed and saved to
bench/out/ui/<state name>.json. The figures are wall-clock on the machine the stack loads, which
is the point: what an operator waits for while the checks run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import requests
from common import OUT, save

from sitewatch.names import site_dag_id


def _token(url: str, password: str) -> str:
    reply = requests.post(
        f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=120
    )
    reply.raise_for_status()
    return reply.json()["access_token"]


def _password(state: Path) -> str:
    return json.loads((state / "airflow" / "passwords.json").read_text())["admin"]


def _env(state: Path, name: str) -> str:
    for line in (state / "env.sh").read_text().splitlines():
        if line.startswith(f"export {name}="):
            return line.split("=", 1)[1].strip("'\"")
    raise SystemExit(f"{name} not in {state / 'env.sh'}")


def requests_to_time(site: str) -> dict[str, str]:
    dag = site_dag_id(site)
    return {
        "DAG list (50, with latest runs)": "/api/v2/dags?limit=50&offset=0&order_by=dag_id",
        "DAG list (UI's, with recent runs)": "/ui/dags?limit=50&offset=0&dag_runs_limit=14",
        "one site's DAG": f"/api/v2/dags/{dag}/details",
        "one site's runs (25)": f"/api/v2/dags/{dag}/dagRuns?limit=25&order_by=-run_after",
        "Sites page": "/sitewatch/",
        "Sites page rows": "/sitewatch/rows",
        "one site's page": f"/sitewatch/sites/{site}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--site", default="s00000")
    args = parser.parse_args()
    url = _env(args.state, "AIRFLOW__API__BASE_URL")
    token = _token(url, _password(args.state))
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/html,application/json"}
    results = {}
    for name, path in requests_to_time(args.site).items():
        times, status = [], None
        for _ in range(args.runs):
            start = time.perf_counter()
            reply = requests.get(url + path, headers=headers, timeout=300)
            times.append(time.perf_counter() - start)
            status = reply.status_code
        results[name] = {
            "path": path,
            "status": status,
            "median_s": statistics.median(times),
            "max_s": max(times),
        }
        print(f"{name}: {status} median {statistics.median(times):.2f} s max {max(times):.2f} s")
    (OUT / "ui").mkdir(parents=True, exist_ok=True)
    save(f"ui/{args.state.name}", {"url_paths": results})


if __name__ == "__main__":
    main()
