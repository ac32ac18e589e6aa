"""Where the CPU goes at an operating point: py-spy over the whole Airflow process tree.

    python bench/pyspy.py PID[,PID...] SECONDS OUT   # record each PID's tree, print the summary

``bench/sustained.py --profile SECONDS`` runs it after a measured window, on the same load, so
the sampling never costs the window's own figures. py-spy (bench/requirements.txt) samples every
process of the stack's Airflow trees (``airflow standalone``, or with Celery each component and
worker: one py-spy per tree, all at once) at 50 Hz, threads on CPU only (``--idle`` off), so each
sample is a slice of busy CPU. The summary gives each process role's share of the samples
(``stackcpu.airflow_role``) and, per role, the frames most often on CPU: the innermost frame of
sitewatch's or Airflow's own code (a library frame is named by the nearest such caller, so
"json.loads" counts under the Airflow function that parses a message) and the top modules by self
time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from stackcpu import airflow_role

PY_SPY = Path(__file__).resolve().parent / "out" / "deps" / "bin" / "py-spy"
RATE = 50
_PROCESS = re.compile(r'^process \d+:"(.*)"$')
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")
_OWN = ("/sitewatch/", "/airflow/")


def record(pids: list[int], seconds: float, out: Path) -> Path:
    """Sample each of ``pids`` and its descendants for the same ``seconds`` into ``out`` (py-spy's
    raw format, one py-spy per tree, their outputs concatenated). Raises CalledProcessError if a
    py-spy fails. Several py-spy processes add their own load to the one they sample; that load
    stays outside the measured window, which is over before this runs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [out.with_name(f"{out.name}.{pid}") for pid in pids]
    spies = [
        subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
            + ["-r", str(RATE), "-d", str(int(seconds)), "-f", "raw", "-o", str(part)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for pid, part in zip(pids, parts, strict=True)
    ]
    for spy in spies:
        _, err = spy.communicate()
        if spy.returncode:
            raise subprocess.CalledProcessError(spy.returncode, spy.args, stderr=err)
    out.write_text("\n".join(part.read_text(errors="replace").strip("\n") for part in parts))
    for part in parts:
        part.unlink()
    return out


def summarize(raw: Path, top: int = 8) -> dict:
    """Shares of the samples in ``raw``: by role, and per role by frame and by module."""
    roles: Counter = Counter()
    frames: dict[str, Counter] = {}
    modules: dict[str, Counter] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        commands = [m.group(1) for p in parts if (m := _PROCESS.match(p))]
        calls = [p for p in parts if not _PROCESS.match(p)]
        role = airflow_role(commands)
        n = int(count)
        roles[role] += n
        frames.setdefault(role, Counter())[_own_frame(calls)] += n
        modules.setdefault(role, Counter())[_module(calls[-1]) if calls else "?"] += n
    total = sum(roles.values()) or 1
    return {
        "samples": total,
        "by_role": {r: round(n / total, 3) for r, n in roles.most_common()},
        "top_frames": {
            r: [(f, round(n / total, 3)) for f, n in c.most_common(top)] for r, c in frames.items()
        },
        "top_modules": {
            r: [(m, round(n / total, 3)) for m, n in c.most_common(top)] for r, c in modules.items()
        },
    }


def _own_frame(calls: list[str]) -> str:
    """The innermost frame in sitewatch's or Airflow's code, with the leaf it called."""
    for frame in reversed(calls):
        match = _FRAME.match(frame)
        if match and any(own in match["file"] for own in _OWN):
            leaf = _FRAME.match(calls[-1])
            name = f"{_short(match['file'])}:{match['func']}"
            return name if frame is calls[-1] or not leaf else f"{name} > {leaf['func']}"
    return calls[-1] if calls else "?"


def _module(frame: str) -> str:
    match = _FRAME.match(frame)
    return _short(match["file"]) if match else frame


def _short(path: str) -> str:
    for anchor in ("site-packages/", "include/", "lib/python3.11/"):
        if anchor in path:
            return path.split(anchor, 1)[1]
    return path


if __name__ == "__main__":
    pids = [int(pid) for pid in sys.argv[1].split(",")]
    seconds, out = float(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(summarize(record(pids, seconds, out)), indent=1))
