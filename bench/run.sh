#!/usr/bin/env bash
# Run the benchmarks and write bench/results.md.
# Usage: bench/run.sh [all|drain|probe|flow|parse|sustained|metrics|burn|status|report]
# (make bench runs all; make bench PART=drain runs one part, then the report).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$ROOT/.venv/bin/python
part=${1:-all}
cd "$ROOT"

# drain, parse and metrics use the default stack (shared Kafka and PostgreSQL): started if not up.
shared_env() {
  scripts/dev.sh services >/dev/null
  # shellcheck source=/dev/null
  source "${SITEWATCH_STATE_DIR:-$ROOT/.state}/env.sh"
}

# The A/B (every attempt on a LocalExecutor worker vs started in the triggerer), the sweep, and the
# CeleryExecutor beside the LocalExecutor, in one run: one fresh private stack per entry
# "executor:place:K[,K...]:schedule[:settings]", in this order. executor: local (airflow standalone) or
# celery; place: triggerer (attempts start in the triggerer), worker (SITEWATCH_PROBE_IN=worker) or
# @<location> (every site has locations: [<location>]: each check a task on that location's
# workers); settings: a name in bench/sustained.py's SETTINGS (before: the defaults before issue
# 30's scheduler settings, beside today's). The older "place:K[,K...]:schedule" means executor
# local. For a quick run:
# SITEWATCH_BENCH_SUSTAINED="local:worker:60:1m local:triggerer:60:1m" SITEWATCH_BENCH_MINUTES=1.
SUSTAINED=${SITEWATCH_BENCH_SUSTAINED:-local:worker:600:1m local:triggerer:600,1000:1m local:triggerer:1200:2m celery:triggerer:600:1m celery:@east:600:1m}
SUSTAINED_MINUTES=${SITEWATCH_BENCH_MINUTES:-5}
# after each window, py-spy the whole Airflow tree on the same load this long (0: no profile)
SUSTAINED_PROFILE=${SITEWATCH_BENCH_PROFILE:-60}
# flow sites (3 steps each) beside each entry's K single sites, in a second window after the K
# alone (issue 26: SITEWATCH_BENCH_FLOWS=300 beside K=600); 0: single sites only
SUSTAINED_FLOWS=${SITEWATCH_BENCH_FLOWS:-0}
# minutes between the K sites' DAGs being there and the window (unset: one interval)
SUSTAINED_WARMUP=${SITEWATCH_BENCH_WARMUP:-}
# 1: keep the rows of earlier runs (another SITEWATCH_BENCH_FLOWS, say) beside this run's
SUSTAINED_APPEND=${SITEWATCH_BENCH_APPEND:-0}

# The sustained.py arguments of one entry, one a line; exit 2 with a message if it is malformed.
sustained_args() {  # entry
  local fields executor place ks schedule settings where
  IFS=: read -r -a fields <<<"$1"
  [ "${#fields[@]}" != 3 ] || fields=(local "${fields[@]}")
  [ "${#fields[@]}" = 4 ] || [ "${#fields[@]}" = 5 ] ||
    { echo "bad sustained entry '$1': executor:place:K[,K...]:schedule[:settings]" >&2; exit 2; }
  executor=${fields[0]} place=${fields[1]} ks=${fields[2]} schedule=${fields[3]} settings=${fields[4]:-default}
  [[ "$settings" =~ ^[a-z]+$ ]] || { echo "bad settings '$settings' in '$1'" >&2; exit 2; }
  case "$executor" in local | celery) ;; *) echo "bad executor '$executor' in '$1': local or celery" >&2; exit 2 ;; esac
  [[ "$ks" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bad K list '$ks' in '$1'" >&2; exit 2; }
  case "$place" in
    triggerer | worker) where=(--probe-in "$place") ;;
    @?*) where=(--location "${place#@}") ;;
    *) echo "bad place '$place' in '$1': triggerer, worker or @<location>" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086 # one argument per K
  printf '%s\n' --executor "$executor" "${where[@]}" --schedule "$schedule" --settings "$settings" \
    --ks ${ks//,/ }
}

sustained() {
  local entry args
  for entry in $SUSTAINED; do sustained_args "$entry" >/dev/null; done  # every entry, before any run
  mkdir -p bench/out/sustained
  # the report shows this run's rows, side by side
  [ "$SUSTAINED_APPEND" = 1 ] || rm -f bench/out/sustained/*.json
  for entry in $SUSTAINED; do
    mapfile -t args < <(sustained_args "$entry")
    "$PY" bench/sustained.py "${args[@]}" --minutes "$SUSTAINED_MINUTES" --profile "$SUSTAINED_PROFILE" \
      --flows "$SUSTAINED_FLOWS" ${SUSTAINED_WARMUP:+--warmup "$SUSTAINED_WARMUP"}
  done
}

case "$part" in
  drain) shared_env; "$PY" bench/drain.py ;;
  probe) "$PY" bench/probe.py ;;
  flow) "$PY" bench/flow.py ;;  # a 3-step flow against a local JSON API, about a minute
  parse) shared_env; "$PY" bench/parse.py ;;
  sustained) sustained ;;  # its own stack on private ports, stopped at the end
  metrics) shared_env; "$PY" bench/metrics.py ;;  # loads 10M checks into a scratch schema
  burn) shared_env; "$PY" bench/burn.py --keep ;;  # 10M checks in bench_burn, kept for reruns
  status) shared_env; "$PY" bench/status_page.py --keep ;;  # 10M checks in bench_status, kept
  report) ;;
  all)
    shared_env
    "$PY" bench/drain.py
    "$PY" bench/probe.py
    "$PY" bench/flow.py
    "$PY" bench/parse.py
    "$PY" bench/metrics.py
    "$PY" bench/burn.py
    "$PY" bench/status_page.py
    sustained
    ;;
  *) echo "usage: bench/run.sh [all|drain|probe|flow|parse|sustained|metrics|burn|status|report]" >&2; exit 2 ;;
esac
"$PY" bench/report.py
