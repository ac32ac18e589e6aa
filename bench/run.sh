#!/usr/bin/env bash
# Run the benchmarks and write bench/results.md.  Usage: bench/run.sh [all|drain|probe|parse|sustained|report]
# (make bench runs all; make bench PART=drain runs one part, then the report).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$ROOT/.venv/bin/python
part=${1:-all}
cd "$ROOT"

# drain and parse use the default stack (shared Kafka and PostgreSQL): start it if it is not up.
shared_env() {
  scripts/dev.sh services >/dev/null
  # shellcheck source=/dev/null
  source "${SITEWATCH_STATE_DIR:-$ROOT/.state}/env.sh"
}

# the sweep of K (preloaded workers, as scripts/dev.sh runs them), then the A/B at K=240 against
# Airflow's defaults, with CPU by process role sampled alongside
sustained() {
  mkdir -p bench/out/sustained
  "$PY" bench/sustained.py --sample-cpu bench/out/sustained/cpu-samples.jsonl &
  local sampler=$!
  "$PY" bench/sustained.py --ks 120 240 300 360 480 --label sweep
  AIRFLOW__SCHEDULER__MP_START_METHOD=fork "$PY" bench/sustained.py --ks 240 --label ab-default
  "$PY" bench/sustained.py --ks 240 --label ab-preload-lazy
  kill "$sampler"
}

case "$part" in
  drain) shared_env; "$PY" bench/drain.py ;;
  probe) "$PY" bench/probe.py ;;
  parse) shared_env; "$PY" bench/parse.py ;;
  sustained) sustained ;;  # its own stack on private ports, stopped at the end
  report) ;;
  all)
    shared_env
    "$PY" bench/drain.py
    "$PY" bench/probe.py
    "$PY" bench/parse.py
    sustained
    ;;
  *) echo "usage: bench/run.sh [all|drain|probe|parse|sustained|report]" >&2; exit 2 ;;
esac
"$PY" bench/report.py
