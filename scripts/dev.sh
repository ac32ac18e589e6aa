#!/usr/bin/env bash
# Local stack for sitewatch: a virtualenv, a single-node Kafka (KRaft) and a PostgreSQL cluster of
# the project's own, then Airflow. No Docker. Everything lives in $SITEWATCH_STATE_DIR (.state/).
#
#   scripts/dev.sh services   start Kafka and PostgreSQL (and Redis for Celery), write .state/env.sh
#                             (idempotent)
#   scripts/dev.sh run        services + Airflow with the UI on localhost:$SITEWATCH_UI_PORT, and
#                             the published status pages served on localhost:$SITEWATCH_STATUS_PORT
#   scripts/dev.sh serve      only serve the status pages (run does it too)
#   scripts/dev.sh test [ARGS]  services + Redis + Airflow metadata DB, then pytest ARGS over every suite
#   scripts/dev.sh stop       stop Airflow, the status page server, Kafka, PostgreSQL and Redis
#                             started from this checkout
#   scripts/dev.sh env        print the environment for the airflow CLI and psql
#
# SITEWATCH_EXECUTOR=local (default): `airflow standalone`, the LocalExecutor. SITEWATCH_EXECUTOR=celery:
# the CeleryExecutor with a Redis broker of the project's own; each Airflow component runs as a
# process of its own, plus SITEWATCH_WORKERS Celery workers for each location (run_celery).
set -euo pipefail
# Everything made here is private to the user: passwords, env files, Airflow's passwords.json and
# logs (which print the admin password). secure_state tightens what older runs left readable.
umask 077

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${SITEWATCH_STATE_DIR:-$ROOT/.state}
KAFKA_PORT=${SITEWATCH_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${SITEWATCH_KAFKA_CONTROLLER_PORT:-19093}
PG_PORT=${SITEWATCH_PG_PORT:-15432}
UI_PORT=${SITEWATCH_UI_PORT:-8080}
STATUS_PORT=${SITEWATCH_STATUS_PORT:-8090}
TOPIC=${SITEWATCH_TOPIC:-sitewatch.checks}
PARTITIONS=${SITEWATCH_TOPIC_PARTITIONS:-3}
# TLS mode (SITEWATCH_TLS=1): certificates in $STATE/tls, a Kafka SSL listener that requires client
# certificates, PostgreSQL with ssl=on. SITEWATCH_KAFKA_PROPERTIES: a file appended to the broker's
# server.properties (later lines win), for settings the script does not make.
TLS=${SITEWATCH_TLS:-0}
KAFKA_TLS_PORT=${SITEWATCH_KAFKA_TLS_PORT:-19094}
KAFKA_PROPERTIES=${SITEWATCH_KAFKA_PROPERTIES:-}
# SITEWATCH_KAFKA_SCRAM="user:password": SCRAM-SHA-256 credentials stored when the broker's storage
# is first formatted, for a SASL_SSL listener added through SITEWATCH_KAFKA_PROPERTIES.
KAFKA_SCRAM=${SITEWATCH_KAFKA_SCRAM:-}
# make test uses databases of its own, so test DAGs and rows never show up in make run's UI.
AIRFLOW_DB=${SITEWATCH_AIRFLOW_DB:-airflow}
RESULTS_DB=${SITEWATCH_RESULTS_DB:-sitewatch}
# Celery: the broker's port, and the Celery workers each location gets (README, "Scale-out with
# Celery"). Unset, SITEWATCH_EXECUTOR follows the stack that runs: celery while its components do.
EXECUTOR=${SITEWATCH_EXECUTOR:-}
REDIS_PORT=${SITEWATCH_REDIS_PORT:-16379}
WORKERS=${SITEWATCH_WORKERS:-1}
# Schedulers that run at once, either executor (Airflow's high availability: they share the work
# through row locks in the metadata database). The extra ones of `airflow standalone` keep their
# pid files in $STATE/airflow/standalone-extra, so they are not taken for a Celery stack.
SCHEDULERS=${SITEWATCH_SCHEDULERS:-1}
ENV_FILE=$STATE/env.sh
# Redis database of the broker: make test's own, so its Celery workers never take make run's tasks.
REDIS_DB=0
if [ "${1:-}" = test ]; then AIRFLOW_DB=airflow_test RESULTS_DB=sitewatch_test ENV_FILE=$STATE/env-test.sh REDIS_DB=1; fi
VENV=$ROOT/.venv
PY=$VENV/bin/python

log() { printf '[sitewatch] %s\n' "$*" >&2; }
die() { printf '[sitewatch] error: %s\n' "$*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
need_free_port() {  # port variable
  if port_busy "$1"; then
    die "port $1 is already in use by another program; set $2 to a free port (e.g. $2=$(( $1 + 100 )))"
  fi
}

# The executor: SITEWATCH_EXECUTOR when set, else the one of make run's stack that runs (so
# `make env`, `make services` and a second `make run` keep a running Celery stack's environment).
resolve_executor() {
  if [ -z "$EXECUTOR" ]; then
    EXECUTOR=local
    [ "$ENV_FILE" != "$STATE/env.sh" ] || ! celery_running || EXECUTOR=celery
  fi
  case "$EXECUTOR" in
    local | celery) ;;
    *) die "SITEWATCH_EXECUTOR must be 'local' (airflow standalone) or 'celery', not '$EXECUTOR'" ;;
  esac
  [[ "$WORKERS" =~ ^[1-9][0-9]{0,2}$ ]] || die "SITEWATCH_WORKERS must be a whole number from 1 to 999, not '$WORKERS'"
  [[ "$SCHEDULERS" =~ ^[1-9]$ ]] || die "SITEWATCH_SCHEDULERS must be a whole number from 1 to 9, not '$SCHEDULERS'"
}

# --- virtualenv ----------------------------------------------------------------------------------
venv() {
  command -v python3 >/dev/null || die "python3 (3.11+) is required"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is required"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  local stamp=$VENV/.sitewatch-installed want
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing sitewatch and its pinned dependencies into .venv"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[test]"
    echo "$want" > "$stamp"
  fi
  # Byte-code for sitewatch's own files, which an editable install leaves uncompiled: every
  # Airflow process that imports them (each DAG-file parse, each task) would otherwise compile
  # them from source when PYTHONDONTWRITEBYTECODE is set, as in many containers. Only changed
  # files are compiled.
  PYTHONDONTWRITEBYTECODE= "$PY" -m compileall -q "$ROOT/include" "$ROOT/dags" "$ROOT/plugins" >/dev/null
}

# --- PostgreSQL ----------------------------------------------------------------------------------
pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return; }; done
  command -v pg_ctl >/dev/null && dirname "$(readlink -f "$(command -v pg_ctl)")"
}

pg_install() {
  [ -n "$(pg_bindir)" ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing the PostgreSQL server with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  [ -n "$(pg_bindir)" ] || die "PostgreSQL server binaries not found: install 'postgresql' (Debian/Ubuntu) or put pg_ctl on PATH"
}

# The server refuses to run as root, so as root the cluster belongs to the 'postgres' user. Its data
# directory must be reachable by that user; a checkout under a private home gets one in /var/tmp.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_dir() {
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
    echo "/var/tmp/sitewatch-pg-$(echo "$STATE" | sha256sum | cut -c1-12)"
  else
    echo "$STATE/pg"
  fi
}

# Least-privilege roles (docker/postgres/sitewatch-roles.psql): Airflow's metadata, the owner that
# migrates, the drain, alerting and the Sites page each log in as their own role. The superuser
# the cluster was created with (sitewatch, password in $STATE/pg-password) only administers.
PG_ROLES=(sitewatch_airflow sitewatch_owner sitewatch_drain sitewatch_alerting sitewatch_reader)

role_password() { cat "$STATE/pg-roles/$1"; }

pg_roles() {  # psql binary dir
  local role
  mkdir -p "$STATE/pg-roles"
  for role in "${PG_ROLES[@]}"; do
    [ -s "$STATE/pg-roles/$role" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/pg-roles/$role"
  done
  # The passwords reach psql through its environment (a subshell's, so Airflow never inherits them).
  ( for role in "${PG_ROLES[@]}"; do
      export "SITEWATCH_PG_$(echo "${role#sitewatch_}" | tr '[:lower:]' '[:upper:]')_PASSWORD=$(role_password "$role")"
    done
    PGPASSWORD=$(cat "$STATE/pg-password") exec "$1/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U sitewatch -d postgres \
      -v admin=sitewatch -v airflow_db="$AIRFLOW_DB" -v results_db="$RESULTS_DB" \
      -f "$ROOT/docker/postgres/sitewatch-roles.psql" ) >"$STATE/pg-roles.log" 2>&1 ||
    { cat "$STATE/pg-roles.log" >&2; die "creating the PostgreSQL roles failed"; }
  if [ "$ENV_FILE" = "$STATE/env-test.sh" ]; then
    # Tests make throwaway schemas and tables as the superuser (SITEWATCH_PG_DSN) and then point
    # sitewatch_postgres (the owner role) at them: let the owner use what the superuser makes.
    PGPASSWORD=$(cat "$STATE/pg-password") "$1/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
      -U sitewatch -d "$RESULTS_DB" >>"$STATE/pg-roles.log" 2>&1 <<'EOF' || die "granting the test defaults failed"
ALTER DEFAULT PRIVILEGES FOR ROLE sitewatch GRANT USAGE, CREATE ON SCHEMAS TO sitewatch_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE sitewatch GRANT ALL ON TABLES TO sitewatch_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE sitewatch GRANT ALL ON SEQUENCES TO sitewatch_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE sitewatch GRANT EXECUTE ON FUNCTIONS TO sitewatch_owner;
EOF
  fi
}

pg_start() {
  pg_install
  local bin dir; bin=$(pg_bindir); dir=$(pg_dir)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown postgres "$dir"
  fi
  [ -f "$STATE/pg-password" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/pg-password")
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "creating the PostgreSQL cluster in $dir/data"
    local pwfile="$dir/.pw"
    cp "$STATE/pg-password" "$pwfile"; [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
    as_pg "$bin/initdb" -D "$dir/data" -U sitewatch --pwfile="$pwfile" -A scram-sha-256 -E UTF8 \
      --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
  fi
  if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on port $(pg_running_port "$dir")"
  else
    need_free_port "$PG_PORT" SITEWATCH_PG_PORT
    local ssl=""
    [ "$TLS" != 1 ] || ssl=$(pg_tls_options "$dir")
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on$ssl" \
      >/dev/null || { tail -20 "$dir/server.log" >&2; die "PostgreSQL did not start (log: $dir/server.log)"; }
    echo "$PG_PORT" > "$dir/port"
    log "PostgreSQL ready on 127.0.0.1:$PG_PORT"
  fi
  PG_PORT=$(pg_running_port "$dir")
  pg_roles "$bin"  # also creates both databases
}

# The server reads its key as its own user and refuses a key others can read: give it copies.
pg_tls_options() {  # pg dir
  local tls=$1/tls f
  mkdir -p "$tls"
  for f in server.cert server.key ca.pem; do install -m 600 "$STATE/tls/$f" "$tls/$f"; done
  [ "$(id -u)" != 0 ] || chown -R postgres "$tls"
  echo " -c ssl=on -c ssl_cert_file=$tls/server.cert -c ssl_key_file=$tls/server.key -c ssl_ca_file=$tls/ca.pem"
}

pg_running_port() { cat "$1/port" 2>/dev/null || echo "$PG_PORT"; }

pg_stop() {
  local bin dir; bin=$(pg_bindir); dir=$(pg_dir)
  [ -n "$bin" ] && [ -f "$dir/data/PG_VERSION" ] || return 0
  if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
  fi
}

# --- Kafka ---------------------------------------------------------------------------------------
kafka_start() {
  local dir=$STATE/kafka
  mkdir -p "$dir"
  if pid_alive "$dir/pid"; then
    log "Kafka already running on port $(cat "$dir/port")"; KAFKA_PORT=$(cat "$dir/port"); return
  fi
  command -v java >/dev/null || die "Java 17+ is required for the local Kafka broker: install a JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "Maven is required to fetch the Kafka broker jars: install it (Debian: apt-get install maven)"
  local pom=$ROOT/scripts/kafka/pom.xml
  if [ "$(cat "$dir/libs.stamp" 2>/dev/null)" != "$(sha256sum < "$pom")" ]; then
    log "resolving the Kafka broker jars with Maven"
    rm -rf "$dir/libs"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir/libs" >"$dir/mvn.log" 2>&1 || { tail -20 "$dir/mvn.log" >&2; die "Maven could not resolve the Kafka jars (log: $dir/mvn.log)"; }
    sha256sum < "$pom" > "$dir/libs.stamp"
  fi
  need_free_port "$KAFKA_PORT" SITEWATCH_KAFKA_PORT
  need_free_port "$KAFKA_CONTROLLER_PORT" SITEWATCH_KAFKA_CONTROLLER_PORT
  local ssl_listener="" ssl_map=""
  rm -f "$dir/tls-port"
  if [ "$TLS" = 1 ]; then
    need_free_port "$KAFKA_TLS_PORT" SITEWATCH_KAFKA_TLS_PORT
    ssl_listener=",SSL://127.0.0.1:$KAFKA_TLS_PORT" ssl_map=",SSL:SSL"
  fi
  cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT$ssl_listener
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT$ssl_listener
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$ssl_map
log.dirs=$dir/data
num.partitions=$PARTITIONS
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  if [ "$TLS" = 1 ]; then
    cat >> "$dir/server.properties" <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$STATE/tls/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$STATE/tls/ca.pem
ssl.client.auth=required
EOF
    echo "$KAFKA_TLS_PORT" > "$dir/tls-port"
  fi
  [ -z "$KAFKA_PROPERTIES" ] || cat "$KAFKA_PROPERTIES" >> "$dir/server.properties"
  local java=(java -Xms256m -Xmx512m -XX:+UseG1GC -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties"
    -Dsitewatch.kafka.log="$dir/server.log" -cp "$dir/libs/*")
  if [ ! -f "$dir/data/meta.properties" ]; then
    local scram=()
    [ -z "$KAFKA_SCRAM" ] || scram=(--add-scram "SCRAM-SHA-256=[name=${KAFKA_SCRAM%%:*},password=${KAFKA_SCRAM#*:}]")
    "${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid | tail -1)" \
      -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "formatting Kafka storage failed"; }
  fi
  setsid nohup "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/pid"; echo "$KAFKA_PORT" > "$dir/port"
  "$PY" "$ROOT/scripts/kafka_ready.py" "127.0.0.1:$KAFKA_PORT" "$TOPIC" "$PARTITIONS" ||
    { tail -n 20 "$dir/server.log" "$dir/stdout.log" >&2; kafka_stop; die "Kafka did not become ready (log: $dir/server.log)"; }
  log "Kafka ready on 127.0.0.1:$KAFKA_PORT${ssl_listener:+ (TLS on $KAFKA_TLS_PORT)}, topic $TOPIC"
}

kafka_stop() { stop_pid "$STATE/kafka/pid" Kafka; }

stop_pid() {  # pidfile name
  pid_alive "$1" || { rm -f "$1"; return 0; }
  local pid left; pid=$(cat "$1")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  # Airflow's supervisor gives each task runner a process group of its own, which the signals to
  # ours miss; it stays in the session setsid opened (session id = our pid): end what is left there.
  left=$(ps -eo pid=,sid= | awk -v sid="$pid" '$2 == sid { print $1 }')
  [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
  rm -f "$1"; log "$2 stopped"
}

# --- Redis (the Celery broker) ------------------------------------------------------------------
redis_install() {
  command -v redis-server >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing the Redis server with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  command -v redis-server >/dev/null || die "redis-server not found: install 'redis-server' (Debian/Ubuntu) or put it on PATH"
}

# The password is generated once into $STATE; it reaches the server through its config file (mode
# 600) and redis-cli through REDISCLI_AUTH, never through a command line, which ps shows to all.
redis_start() {
  local dir=$STATE/redis
  mkdir -p "$dir"
  if pid_alive "$dir/pid"; then
    REDIS_PORT=$(cat "$dir/port"); log "Redis already running on port $REDIS_PORT"; return
  fi
  redis_install
  need_free_port "$REDIS_PORT" SITEWATCH_REDIS_PORT
  [ -s "$STATE/redis-password" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/redis-password"
  # appendonly: tasks queued in the broker survive its restart. daemonize no: the pid is $!.
  cat > "$dir/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
requirepass $(cat "$STATE/redis-password")
dir $dir
logfile $dir/server.log
daemonize no
save ""
appendonly yes
EOF
  chmod 600 "$dir/redis.conf"
  setsid nohup redis-server "$dir/redis.conf" >"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/pid"; echo "$REDIS_PORT" > "$dir/port"
  for _ in $(seq 50); do redis_ping && break; pid_alive "$dir/pid" || break; sleep 0.2; done
  redis_ping || { tail -n 20 "$dir/server.log" "$dir/stdout.log" >&2; redis_stop; die "Redis did not start (log: $dir/server.log)"; }
  log "Redis ready on 127.0.0.1:$REDIS_PORT"
}

redis_ping() {
  REDISCLI_AUTH=$(cat "$STATE/redis-password") redis-cli --no-auth-warning -h 127.0.0.1 -p "$REDIS_PORT" \
    ping 2>/dev/null | grep -q PONG
}

redis_stop() { stop_pid "$STATE/redis/pid" Redis; }

# The Celery settings; the broker's URL whenever Redis runs (tests build Celery apps from it).
celery_env() {
  pid_alive "$STATE/redis/pid" || return 0
  echo "export SITEWATCH_CELERY_BROKER_URL='redis://:$(cat "$STATE/redis-password")@127.0.0.1:$(cat "$STATE/redis/port")/$REDIS_DB'"
  [ "$EXECUTOR" = celery ] || return 0
  # Task state goes to Airflow's metadata database, as in docker-compose.yaml. Each worker runs up
  # to WORKER_CONCURRENCY tasks at once; a probe mostly waits on the network, so 8 fit 2 cores.
  cat <<EOF
export AIRFLOW__CELERY__BROKER_URL="\$SITEWATCH_CELERY_BROKER_URL"
export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql://sitewatch_airflow:$(role_password sitewatch_airflow)@127.0.0.1:$PG_PORT/$AIRFLOW_DB"
export AIRFLOW__CELERY__WORKER_CONCURRENCY=${AIRFLOW__CELERY__WORKER_CONCURRENCY:-8}
# Airflow's Celery configuration, with sitewatch imported in each worker before its pool forks,
# so that no check from a location pays for the imports (sitewatch.airflow.celery_config).
export AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=${AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS:-sitewatch.airflow.celery_config.CELERY_CONFIG}
EOF
}

# --- the status pages ----------------------------------------------------------------------------
# make run serves the folder the sitewatch_status_page DAG publishes to by default (a page a
# minute after the start) with Python's own static file server, on 127.0.0.1 only. With
# SITEWATCH_STATUS_PAGE_URL set, the pages go there, and whoever chose it serves them.
status_serve() {
  local dir=$STATE/status-server
  if [ -n "${SITEWATCH_STATUS_PAGE_URL:-}" ]; then
    log "status pages go to SITEWATCH_STATUS_PAGE_URL; not served here"; return
  fi
  mkdir -p "$dir" "$STATE/status-pages"
  if pid_alive "$dir/pid"; then STATUS_PORT=$(cat "$dir/port"); return; fi
  need_free_port "$STATUS_PORT" SITEWATCH_STATUS_PORT
  setsid nohup python3 -m http.server "$STATUS_PORT" --bind 127.0.0.1 \
    --directory "$STATE/status-pages" >"$dir/server.log" 2>&1 &
  echo $! > "$dir/pid"; echo "$STATUS_PORT" > "$dir/port"
  for _ in $(seq 50); do port_busy "$STATUS_PORT" && return; pid_alive "$dir/pid" || break; sleep 0.2; done
  cat "$dir/server.log" >&2; status_stop; die "the status page server did not start (log: $dir/server.log)"
}

print_status() {
  pid_alive "$STATE/status-server/pid" || return 0
  log "status pages: http://localhost:$(cat "$STATE/status-server/port")/ (a folder per page of the sites file)"
}

status_stop() { stop_pid "$STATE/status-server/pid" "status page server"; }

# --- test-only tools ------------------------------------------------------------------------------
# axe-core, the accessibility engine that tests/browser/test_status_page_a11y.py runs in Chromium:
# the npm package, pinned here, installed once into $STATE/axe (npm knows where packages come from).
AXE_CORE=axe-core@4.14.1
AXE_JS=$STATE/axe/node_modules/axe-core/axe.min.js

axe_install() {
  local dir=$STATE/axe
  [ "$(cat "$dir/.installed" 2>/dev/null)" = "$AXE_CORE" ] && [ -f "$AXE_JS" ] && return
  if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing npm with apt-get (for axe-core)"
    { apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install \
        -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends npm >/dev/null; } ||
      log "warning: apt-get install npm failed"
  fi
  command -v npm >/dev/null || { log "warning: npm missing; the accessibility test will fail (install 'npm')"; return 0; }
  log "installing $AXE_CORE with npm into $dir"
  mkdir -p "$dir"
  if npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
      "$AXE_CORE" >"$dir/npm.log" 2>&1 && [ -f "$AXE_JS" ]; then
    echo "$AXE_CORE" > "$dir/.installed"
  else
    log "warning: npm install $AXE_CORE failed (log: $dir/npm.log); the accessibility test will fail"
  fi
}

# --- environment ---------------------------------------------------------------------------------
# An Airflow connection of type postgres to the results database as a role.
pg_conn() {  # role
  echo "{\"conn_type\": \"postgres\", \"host\": \"127.0.0.1\", \"port\": $PG_PORT, \"login\": \"$1\", \"password\": \"$(role_password "$1")\", \"schema\": \"$RESULTS_DB\"}"
}

write_env() {
  local pw; pw=$(cat "$STATE/pg-password")
  local pg="postgresql://sitewatch:$pw@127.0.0.1:$PG_PORT"
  local owner; owner=$(role_password sitewatch_owner)
  # make test points sitewatch_postgres at throwaway schemas; the narrower connections would not
  # follow it there, so its suites use sitewatch_postgres alone (every component falls back to it).
  local split="# (the drain, alerting and the Sites page fall back to sitewatch_postgres)"
  # the tests' drains end as soon as they are caught up (each test waits for its own rows)
  local idle="export SITEWATCH_DRAIN_IDLE_SECONDS=0"
  local axe="export SITEWATCH_AXE_JS=\"$AXE_JS\""
  if [ "$ENV_FILE" = "$STATE/env.sh" ]; then
    idle="# SITEWATCH_DRAIN_IDLE_SECONDS: the default (README, Settings)"
    axe="# SITEWATCH_AXE_JS: make test's (axe-core, for the accessibility test)"
    split="export AIRFLOW_CONN_SITEWATCH_POSTGRES_DRAIN='$(pg_conn sitewatch_drain)'
export AIRFLOW_CONN_SITEWATCH_POSTGRES_ALERTING='$(pg_conn sitewatch_alerting)'
export AIRFLOW_CONN_SITEWATCH_POSTGRES_READER='$(pg_conn sitewatch_reader)'"
  fi
  mkdir -p "$STATE/airflow"
  cat > "$ENV_FILE" <<EOF
# Generated by scripts/dev.sh; source it to use the airflow CLI and psql against the local stack.
export PATH="$VENV/bin:\$PATH"
export AIRFLOW_HOME="$STATE/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=$([ "$EXECUTOR" = celery ] && echo CeleryExecutor || echo LocalExecutor)
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$UI_PORT/execution/"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://sitewatch_airflow:$(role_password sitewatch_airflow)@127.0.0.1:$PG_PORT/$AIRFLOW_DB"
export AIRFLOW__API__PORT=$UI_PORT
export AIRFLOW__API__BASE_URL="http://localhost:$UI_PORT"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$STATE/airflow/passwords.json"
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
# A task's supervisor must reach the execution API (the api-server) before the task starts. Right
# after start-up the api-server may not listen yet, and with many tasks due at once on a small
# machine it answers slowly; Airflow's defaults (5 s per call, 5 tries, ~10 s in all) then fail
# such tasks without ever running them. Wait up to 30 s per call, and retry for ~3 minutes.
export AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT=30
export AIRFLOW__WORKERS__EXECUTION_API_RETRIES=10
# Every check is a task process forked from a LocalExecutor worker. Workers started from a
# forkserver that imported sitewatch.airflow.preload give each task Airflow's task runner,
# sitewatch and the Kafka client already imported: 0.14 instead of 0.34 CPU-seconds per check
# (bench/results.md).
# Set AIRFLOW__SCHEDULER__MP_START_METHOD=fork before starting for Airflow's default.
export AIRFLOW__SCHEDULER__MP_START_METHOD=${AIRFLOW__SCHEDULER__MP_START_METHOD:-forkserver}
export AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=sitewatch.airflow.preload
# Each check is one DAG run. Airflow creates and schedules at most 10 runs per scheduler loop by
# default, which caps a small machine near 120 checks a minute whatever runs them; 100 lets the
# scheduler keep up with 600+ (bench/results.md, "Sustained").
export AIRFLOW__SCHEDULER__MAX_DAGRUNS_TO_CREATE_PER_LOOP=100
export AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE=100
# Parse a DAG file when it or the sites file changes, and else once a day, not every 30 s:
# Airflow writes each parse back holding its DAGs' rows of the dag table, and at 10,000 sites the
# eight site files' writes held the triggerer and the schedulers for two minutes (docs/scaling.md).
# The DAG processor's sitewatch plugin (sitewatch.airflow.processor_preload) parses again at once
# the files a change of the sites file touches, and the file of a DAG that Airflow left at its
# run limit (processor_preload.held_back); without it, Airflow's 30 s stays. Airflow writes
# a parsed DAG only 30 s after its last write (min_serialized_dag_update_interval): with parses on
# change, a second edit within 30 s would wait a day; 0 writes each changed DAG (unchanged ones
# never are: Airflow compares their hashes).
case "\${SITEWATCH_DAG_PROCESSOR_PRELOAD:-1}" in
  0|false|False|FALSE) ;;
  *) export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=\${AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL:-86400}
     export AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL=\${AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL:-0} ;;
esac
export AIRFLOW_CONN_SITEWATCH_KAFKA='{"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:$KAFKA_PORT"}}'
# The results database: sitewatch_postgres is its owner (migrations, maintenance, and every
# component whose own connection is not defined); docs/docker.md, "Database roles".
export AIRFLOW_CONN_SITEWATCH_POSTGRES='$(pg_conn sitewatch_owner)'
$split
$idle
$axe
# The superuser, for tests that make throwaway schemas and act as each role (SET ROLE).
export SITEWATCH_PG_DSN="$pg/$RESULTS_DB"
export SITEWATCH_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export SITEWATCH_TOPIC="$TOPIC"
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=sitewatch_owner PGDATABASE=$RESULTS_DB PGPASSWORD="$owner"
$(celery_env)
EOF
  [ "$TLS" != 1 ] || write_tls_env
  chmod 600 "$ENV_FILE"
}

# TLS variants of both connections, e.g. export AIRFLOW_CONN_SITEWATCH_KAFKA=$SITEWATCH_KAFKA_TLS_CONN
write_tls_env() {
  local tls=$STATE/tls pw; pw=$(role_password sitewatch_owner)
  KAFKA_TLS_PORT=$(cat "$STATE/kafka/tls-port" 2>/dev/null || echo "$KAFKA_TLS_PORT")
  cat >> "$ENV_FILE" <<EOF
export SITEWATCH_TLS_DIR="$tls"
export SITEWATCH_KAFKA_TLS_CONN='{"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:$KAFKA_TLS_PORT", "security.protocol": "SSL", "ssl.ca.location": "$tls/ca.pem", "ssl.certificate.location": "$tls/service.cert", "ssl.key.location": "$tls/service.key"}}'
export SITEWATCH_POSTGRES_TLS_CONN='{"conn_type": "postgres", "host": "127.0.0.1", "port": $PG_PORT, "login": "sitewatch_owner", "password": "$pw", "schema": "$RESULTS_DB", "extra": {"sslmode": "verify-full", "sslrootcert": "$tls/ca.pem"}}'
EOF
}

# Made private by umask 077 from now on; this fixes what older runs left readable. As root the
# PostgreSQL cluster may live in $STATE/pg, owned by the postgres user, which must still pass
# through $STATE (x, not r): pg_dir chooses by that.
secure_state() {
  mkdir -p "$STATE"
  chmod -R go-rwx "$STATE"
  [ "$(id -u)" != 0 ] || chmod 711 "$STATE"
}

services() {
  secure_state
  venv
  [ "$TLS" != 1 ] || "$PY" "$ROOT/scripts/tls_certs.py" "$STATE/tls"
  pg_start
  kafka_start
  # the test suite builds Celery apps on this broker, whichever executor make run uses
  if [ "$EXECUTOR" = celery ] || [ "$ENV_FILE" = "$STATE/env-test.sh" ]; then redis_start; fi
  write_env
}

airflow_db() {
  # shellcheck source=/dev/null
  source "$ENV_FILE"
  log "migrating the Airflow metadata database"
  airflow db migrate >"$STATE/airflow/db-migrate.log" 2>&1 ||
    { tail -30 "$STATE/airflow/db-migrate.log" >&2; die "airflow db migrate failed (log: $STATE/airflow/db-migrate.log)"; }
}

run() {
  if [ "$EXECUTOR" = celery ]; then run_celery; return; fi
  ! celery_running || die "the Celery stack of this checkout is running: make stop first, or leave SITEWATCH_EXECUTOR unset"
  services
  airflow_db
  status_serve
  if pid_alive "$STATE/airflow/pid"; then
    log "Airflow already running: http://localhost:$UI_PORT"; print_login; print_status; return
  fi
  need_free_port "$UI_PORT" SITEWATCH_UI_PORT
  log "starting Airflow (standalone); logs in $STATE/airflow/standalone.log"
  setsid nohup airflow standalone >"$STATE/airflow/standalone.log" 2>&1 &
  echo $! > "$STATE/airflow/pid"
  for _ in $(seq 180); do
    curl -fs "http://localhost:$UI_PORT/api/v2/version" >/dev/null 2>&1 && break
    pid_alive "$STATE/airflow/pid" || { tail -30 "$STATE/airflow/standalone.log" >&2; die "Airflow exited"; }
    sleep 1
  done
  curl -fs "http://localhost:$UI_PORT/api/v2/version" >/dev/null || die "Airflow did not answer on port $UI_PORT"
  extra_schedulers standalone-extra/
  log "Airflow is up: http://localhost:$UI_PORT"
  print_status
  print_login
  log "stop everything with: make stop"
}

# --- Airflow with the CeleryExecutor -------------------------------------------------------------
# `airflow standalone` runs a LocalExecutor only, so here each component is a process of its own
# (own session, pid file $STATE/airflow/<name>.pid, log <name>.log), plus SITEWATCH_WORKERS
# Celery workers for each location `sitewatch locations` names. Probes of the default location
# start in the triggerer; a location's other probes run only on its workers (queue sitewatch-<loc>).

celery_running() {
  local f
  for f in "$STATE"/airflow/*.pid; do pid_alive "$f" && return 0; done
  return 1
}

start_component() {  # name airflow-arguments... (name may start with a folder under airflow/)
  local name=$1; shift
  mkdir -p "$(dirname "$STATE/airflow/$name")"
  pid_alive "$STATE/airflow/$name.pid" && return 0
  log "starting $name; log in $STATE/airflow/$name.log"
  setsid nohup airflow "$@" >"$STATE/airflow/$name.log" 2>&1 &
  echo $! > "$STATE/airflow/$name.pid"
  STARTED=$((${STARTED:-0} + 1))
}

# Components on one machine share $AIRFLOW_HOME/logs, where the api-server reads every task's log
# itself; log servers of their own would only compete for ports 8793/8794 (with each other and
# with another checkout's stack), hence --skip-serve-logs.
run_celery() {
  pid_alive "$STATE/airflow/pid" && die "Airflow standalone (the LocalExecutor) of this checkout is running: make stop first"
  services
  airflow_db
  status_serve
  local locations location queue n
  STARTED=0
  locations=$(sitewatch locations) || die "sitewatch locations failed: fix the sites file (sitewatch validate)"
  pid_alive "$STATE/airflow/api-server.pid" || need_free_port "$UI_PORT" SITEWATCH_UI_PORT
  start_component api-server api-server
  start_component scheduler scheduler --skip-serve-logs
  extra_schedulers
  start_component dag-processor dag-processor
  start_component triggerer triggerer --skip-serve-logs
  while IFS=$'\t' read -r location queue; do
    [ -n "$location" ] || continue
    for n in $(seq "$WORKERS"); do
      start_component "worker-$location-$n" celery worker --queues "$queue" \
        --celery-hostname "$location-$n@%h" --concurrency "$AIRFLOW__CELERY__WORKER_CONCURRENCY" --skip-serve-logs
    done
  done <<< "$locations"
  for _ in $(seq 180); do
    curl -fs "http://localhost:$UI_PORT/api/v2/version" >/dev/null 2>&1 && break
    pid_alive "$STATE/airflow/api-server.pid" || break
    sleep 1
  done
  celery_check
  log "Airflow (CeleryExecutor) is up: http://localhost:$UI_PORT"
  log "workers: $(cd "$STATE/airflow" && ls worker-*.pid | sed 's/\.pid$//' | tr '\n' ' ')"
  print_status
  print_login
  log "stop everything with: make stop"
}

# Schedulers 2..SITEWATCH_SCHEDULERS beside the first, each a component (pid file prefix: $1).
extra_schedulers() {  # [pid-file-prefix]
  local n
  for n in $(seq 2 "$SCHEDULERS"); do start_component "${1:-}scheduler-$n" scheduler --skip-serve-logs; done
}

# Every component still runs once the api-server answers, and a few seconds after a restart of
# only some (a bad setting ends a Celery worker within them).
celery_check() {
  local f name dead=""
  [ "$STARTED" = 0 ] || sleep 5
  for f in "$STATE"/airflow/*.pid; do
    name=$(basename "$f" .pid)
    pid_alive "$f" || { tail -20 "$STATE/airflow/$name.log" >&2; dead="$dead $name"; }
  done
  [ -z "$dead" ] || die "exited:$dead (logs in $STATE/airflow; make run starts what is missing)"
  curl -fs "http://localhost:$UI_PORT/api/v2/version" >/dev/null || die "Airflow did not answer on port $UI_PORT"
}

print_login() {
  local users=$STATE/airflow/passwords.json
  for _ in $(seq 30); do [ -s "$users" ] && break; sleep 1; done
  log "log in as admin with the password in $users: $(cat "$users" 2>/dev/null)"
}

# Every Airflow process of either executor at once (a Celery worker lets running tasks finish
# first, for up to stop_pid's 30 s), then the services.
stop() {
  local f
  for f in "$STATE/airflow/pid" "$STATE"/airflow/*.pid "$STATE"/airflow/standalone-extra/*.pid; do
    [ -e "$f" ] || continue
    if [ "$f" = "$STATE/airflow/pid" ]; then stop_pid "$f" Airflow & else stop_pid "$f" "Airflow $(basename "$f" .pid)" & fi
  done
  wait
  status_stop
  kafka_stop
  pg_stop
  redis_stop
}

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
chromium_install() {
  [ -x /usr/bin/chromium ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium with apt-get (for tests/browser)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  [ -x /usr/bin/chromium ] || log "warning: /usr/bin/chromium missing; tests/browser will fail (install 'chromium')"
}

# tests/prometheus.py runs Debian's /usr/bin/prometheus itself (own config, port and storage, one per
# test), so the package's own service must never run: a policy-rc.d that refuses every start is in
# place while it installs (one already there is left as it is), and a server its postinst started
# anyway (found by the init script's pid file) is stopped. No recommends: prometheus-node-exporter
# would be one more service.
prometheus_install() {
  [ -x /usr/bin/prometheus ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    local policy=/usr/sbin/policy-rc.d made=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\n# scripts/dev.sh: no service starts while it installs prometheus\nexit 101\n' > "$policy"
      chmod 755 "$policy"; made=1
    fi
    log "installing prometheus with apt-get (for tests/unit/test_prometheus_helper.py, tests/faults/test_prometheus.py)"
    # another checkout's make test may be installing it at the same moment: wait for its lock
    { apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install \
        -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends prometheus >/dev/null; } ||
      log "warning: apt-get install prometheus failed"
    [ -z "$made" ] || rm -f "$policy"
    if pid_alive /run/prometheus/prometheus.pid; then
      log "stopping the prometheus service the package started"
      kill "$(cat /run/prometheus/prometheus.pid)" || true
    fi
  fi
  [ -x /usr/bin/prometheus ] || log "warning: /usr/bin/prometheus missing; the Prometheus tests will fail (install 'prometheus')"
}

test_suite() {
  services
  airflow_db
  chromium_install
  axe_install
  prometheus_install
  # shellcheck source=/dev/null
  source "$ENV_FILE"
  cd "$ROOT"
  local rc=0
  "$VENV/bin/ruff" check . || rc=1
  "$VENV/bin/lint-imports" --no-cache || rc=1  # the layer rules in pyproject.toml
  # The suites mostly wait (on Airflow, the brokers, timeouts): four pytest processes share the
  # two cores (SITEWATCH_TEST_WORKERS, 0 for one process). Tests that share a private stack or the
  # drain's consumer group run in one process, one after another: tests/conftest.py, "Groups".
  "$VENV/bin/pytest" -n "${SITEWATCH_TEST_WORKERS:-4}" --dist loadgroup "$@" || rc=1
  return $rc
}

cmd=${1:-}; shift || true
resolve_executor
case "$cmd" in
  services) services; log "environment written to $STATE/env.sh (source it)" ;;
  run) run ;;
  serve) status_serve; print_status ;;
  test) test_suite "$@" ;;
  stop) stop ;;
  env) services >/dev/null; cat "$STATE/env.sh" ;;
  *) die "usage: scripts/dev.sh services|run|serve|test|stop|env" ;;
esac
