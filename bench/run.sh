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

# The A/B (every attempt on a LocalExecutor worker vs started in the triggerer) and the sweep, in
# one run: one fresh private stack per entry "probe-in:K[,K...]:schedule", in this order. For a
# quick run: SITEWATCH_BENCH_SUSTAINED="worker:60:1m triggerer:60:1m" SITEWATCH_BENCH_MINUTES=1.
SUSTAINED=${SITEWATCH_BENCH_SUSTAINED:-worker:600:1m triggerer:600,1000:1m triggerer:1200:2m}
SUSTAINED_MINUTES=${SITEWATCH_BENCH_MINUTES:-5}
# after each window, py-spy the whole Airflow tree on the same load this long (0: no profile)
SUSTAINED_PROFILE=${SITEWATCH_BENCH_PROFILE:-60}
sustained() {
  local entry place ks schedule
  mkdir -p bench/out/sustained
  rm -f bench/out/sustained/*.json  # the report shows this run's rows, side by side
  for entry in $SUSTAINED; do
    IFS=: read -r place ks schedule <<<"$entry"
    # shellcheck disable=SC2086 # one argument per K
    "$PY" bench/sustained.py --probe-in "$place" --schedule "$schedule" --ks ${ks//,/ } \
      --minutes "$SUSTAINED_MINUTES" --profile "$SUSTAINED_PROFILE"
  done
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
