"""The Docker stack agrees with the code: both compose files and the Dockerfile.

Nothing here needs Docker. The compose files are read as YAML (anchors and ``<<`` merges resolved
by PyYAML, ``${VAR:-default}`` by ``interpolate`` below) and checked against the names the code
uses, the version pins and what scaling out requires. ``docker compose config`` is not run: the
Docker client here has no compose plugin. The metrics profile's Prometheus config and rules are
checked with promtool (Debian's, as the end-to-end Prometheus test uses).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.unit.metrics_files import (
    ALERTS_YML,
    FAMILY_BY_NAME,
    PROMETHEUS_YML,
    metric_names,
    metrics_path,
    prometheus_config,
    promtool,
    scrape_job,
)

ROOT = Path(__file__).resolve().parents[2]

# service -> the Airflow command it runs (its options aside); all use the image of the Dockerfile
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-scheduler-2": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-triggerer-2": "triggerer",
    "airflow-worker": "celery worker",
    "airflow-worker-eu": "celery worker",
    "airflow-worker-us": "celery worker",
    "airflow-init": None,
}
# The Celery worker of the default location; a location's own is WORKER-<location>.
WORKER = "airflow-worker"
EXAMPLE_LOCATIONS = ("eu", "us")
BACKING_SERVICES = {"redis", "postgres", "kafka"}
CERTS_TARGET = "/opt/sitewatch/certs"
AIVEN_VARS = {
    "AIRFLOW_CONN_SITEWATCH_KAFKA": "SITEWATCH_KAFKA_CONN",
    "AIRFLOW_CONN_SITEWATCH_POSTGRES": "SITEWATCH_POSTGRES_CONN",
}
# the narrower results connections, optional with Aiven (empty: fall back to sitewatch_postgres)
AIVEN_OPTIONAL_VARS = {
    "AIRFLOW_CONN_SITEWATCH_POSTGRES_DRAIN": "SITEWATCH_POSTGRES_DRAIN_CONN",
    "AIRFLOW_CONN_SITEWATCH_POSTGRES_ALERTING": "SITEWATCH_POSTGRES_ALERTING_CONN",
    "AIRFLOW_CONN_SITEWATCH_POSTGRES_READER": "SITEWATCH_POSTGRES_READER_CONN",
}
# Secrets compose requires (no defaults); docker/new-env.sh writes them. Tests fill them in.
SECRET_VARS = (
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_FERNET_KEY",
    "SITEWATCH_PG_ADMIN_PASSWORD",
    "SITEWATCH_PG_AIRFLOW_PASSWORD",
    "SITEWATCH_PG_OWNER_PASSWORD",
    "SITEWATCH_PG_DRAIN_PASSWORD",
    "SITEWATCH_PG_ALERTING_PASSWORD",
    "SITEWATCH_PG_READER_PASSWORD",
)
SECRETS = {name: f"{name.lower()}-value" for name in SECRET_VARS}
# The profile `metrics` (docs/metrics.md): service -> the port it serves in its container.
METRICS_PROFILE = "metrics"
METRICS_SERVICES = {"prometheus": 9090, "grafana": 3000}
# Mounted files the user makes, git-ignored: no checkout has them.
LOCAL_FILES = {"./docker/prometheus/token"}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Expand compose variables: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``.

    Unset variables take their default; ``${X:?...}`` with X unset raises KeyError.
    """
    env = env or {}

    def sub(match: re.Match) -> str:
        name, op, arg = match.groups()
        if name is None:
            return "$"
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg or ""

    return _VAR.sub(sub, value)


def load(name: str) -> dict:
    with open(ROOT / name) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yaml")


@pytest.fixture(scope="module")
def aiven() -> dict:
    return load("docker-compose.aiven.yaml")


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(
    service: dict, env: dict[str, str] | None = None, secrets: dict[str, str] = SECRETS
) -> dict[str, str]:
    """A service's environment, interpolated (list or mapping form) with ``secrets`` set."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    env = {**secrets, **(env or {})}
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def binds(service: dict) -> list[dict]:
    """The service's bind mounts as ``{source, target, read_only, create}`` (both syntaxes)."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            if not source.startswith((".", "/")):
                continue  # a named volume
            ro = bool(mode) and "ro" in mode[0].split(",")
            found.append({"source": source, "target": target, "read_only": ro, "create": True})
        elif volume.get("type") == "bind":
            found.append(
                {
                    "source": volume["source"],
                    "target": volume["target"],
                    "read_only": bool(volume.get("read_only")),
                    "create": bool(volume.get("bind", {}).get("create_host_path")),
                }
            )
    return found


def airflow_pin() -> str:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        deps = tomllib.load(handle)["project"]["dependencies"]
    (pin,) = [d.split("==", 1)[1] for d in deps if d.startswith("apache-airflow==")]
    return pin


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


# --- structure --------------------------------------------------------------------------------


def test_compose_files_parse_and_the_override_adds_no_service(compose, aiven):
    assert isinstance(compose["services"], dict)
    assert set(aiven["services"]) <= set(compose["services"])


def test_every_component_the_code_needs_is_there(services):
    assert set(AIRFLOW_SERVICES) | BACKING_SERVICES <= set(services)
    for name, command in AIRFLOW_SERVICES.items():
        if command:
            words = command.split()
            assert command_words(services[name])[: len(words)] == words, name


def test_airflow_services_run_the_built_image_with_celery(services):
    built = {name for name, svc in services.items() if "build" in svc}
    assert built == set(AIRFLOW_SERVICES)
    images = {services[name]["image"] for name in AIRFLOW_SERVICES}
    assert len(images) == 1, images
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379/")
        assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert "@postgres/airflow" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
            "http://airflow-apiserver:8080/execution/"
        )
        # one secret for all: the scheduler signs the task tokens the API server checks
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
        assert "AIRFLOW__CORE__FERNET_KEY" in env


def test_the_worker_can_be_scaled(services):
    worker = services["airflow-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert not any("container_name" in svc for svc in services.values())


def test_only_the_api_server_publishes_a_host_port(services):
    """...of the stack; the metrics profile's services publish theirs, below."""
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published - set(METRICS_SERVICES) == {"airflow-apiserver"}
    (port,) = services["airflow-apiserver"]["ports"]
    assert interpolate(port).endswith(":8080")


def test_the_api_is_published_on_localhost_unless_the_user_opts_in(services):
    (port,) = services["airflow-apiserver"]["ports"]
    assert interpolate(port) == "127.0.0.1:8080:8080"
    assert interpolate(port, {"SITEWATCH_UI_PORT": "9090"}) == "127.0.0.1:9090:8080"
    assert interpolate(port, {"SITEWATCH_BIND": "0.0.0.0"}) == "0.0.0.0:8080:8080"


def test_long_running_services_have_healthchecks(services):
    for name, svc in services.items():
        if name != "airflow-init":
            assert svc.get("healthcheck", {}).get("test"), name


def test_depends_on_names_existing_services_with_a_fitting_condition(services):
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec["condition"]
            if dep == "airflow-init":
                assert condition == "service_completed_successfully"
            else:
                assert condition == "service_healthy"
                assert services[dep].get("healthcheck"), f"{dep} has no healthcheck"
    for name in set(AIRFLOW_SERVICES) - {"airflow-init"}:
        assert "airflow-init" in services[name]["depends_on"], name
    assert "kafka" in services["airflow-init"]["depends_on"]


# --- locations: one Celery worker service per location ------------------------------------------


def command_words(service: dict) -> list[str]:
    """A service's command as words (compose takes a string or a list)."""
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else list(command)


def worker_services(services: dict) -> dict[str, str]:
    """Each Celery worker service -> its location (``airflow-worker-<location>``; local for the
    plain one)."""
    from sitewatch.names import LOCAL_LOCATION

    return {
        name: LOCAL_LOCATION if name == WORKER else name.removeprefix(WORKER + "-")
        for name, svc in services.items()
        if command_words(svc)[:2] == ["celery", "worker"]
    }


def option(service: dict, flag: str) -> str | None:
    """The value of ``--flag value`` (or ``--flag=value``) in its command, None if absent."""
    words = command_words(service)
    for index, word in enumerate(words):
        if word == flag:
            return words[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def test_each_worker_listens_only_on_its_locations_queue(services):
    from sitewatch.names import DEFAULT_QUEUE, location_queue
    from sitewatch.observation import LOCATION_NAME

    workers = worker_services(services)
    assert set(workers.values()) >= {"local", *EXAMPLE_LOCATIONS}
    for name, location in workers.items():
        assert LOCATION_NAME.fullmatch(location), name  # a name a site's `locations` accepts
        queue = location_queue(location) or DEFAULT_QUEUE
        assert option(services[name], "--queues") == queue, name


def test_a_location_worker_is_the_worker_on_another_queue_in_a_profile_of_its_own(services):
    base = services[WORKER]
    assert "profiles" not in base  # the default location always runs
    same = {k: v for k, v in base.items() if k != "command"}
    for name, location in worker_services(services).items():
        if name == WORKER:
            continue
        svc = services[name]
        assert svc["profiles"] == [f"location-{location}"], name
        # environment, healthcheck, grace period, dependencies: all the worker's own
        assert {k: v for k, v in svc.items() if k not in ("command", "profiles")} == same, name


def test_triggerers_take_every_trigger(services):
    """Airflow 3.3 gives the trigger a probe starts from no queue: a triggerer limited to queues
    would never run the default location's probes (sitewatch.airflow.operators)."""
    for name, command in AIRFLOW_SERVICES.items():
        if command == "triggerer":
            assert option(services[name], "--queues") is None, name
            assert "AIRFLOW__TRIGGERER__QUEUES_ENABLED" not in env_of(services[name]), name


# --- versions ---------------------------------------------------------------------------------


def test_airflow_image_matches_the_pin_in_pyproject(services):
    pin = airflow_pin()
    image = services["airflow-scheduler"]["image"]
    assert image.rsplit(":", 1)[1] == pin
    base = re.search(r"^FROM\s+(\S+)", dockerfile(), re.MULTILINE).group(1)
    match = re.fullmatch(r"apache/airflow:([\d.]+)-python(3\.\d+)", base)
    assert match, base
    assert match.group(1) == pin
    assert tuple(map(int, match.group(2).split("."))) >= (3, 11)  # requires-python


def test_kafka_image_matches_the_local_broker(services):
    pom = ET.parse(ROOT / "scripts/kafka/pom.xml").getroot()
    (version,) = [el.text for el in pom.iter() if el.tag.endswith("kafka.version")]
    assert services["kafka"]["image"] == f"apache/kafka:{version}"


def test_every_image_is_pinned(services):
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), name
    assert re.fullmatch(r"postgres:1[56][\w.-]*", services["postgres"]["image"])
    assert re.fullmatch(r"redis:7\.[\w.-]+", services["redis"]["image"])


# --- connections, topic, databases ------------------------------------------------------------


def connection(services: dict, conn_id: str, env: dict | None = None) -> dict:
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    values = {env_of(services[name], env).get(variable) for name in AIRFLOW_SERVICES}
    assert len(values) == 1 and None not in values, f"{variable} differs or is missing: {values}"
    return json.loads(values.pop())


def test_kafka_connection_points_at_the_kafka_service_listener(services):
    from sitewatch.names import KAFKA_CONN_ID

    conn = connection(services, KAFKA_CONN_ID)
    assert conn["conn_type"] == "kafka"
    kafka = env_of(services["kafka"])
    advertised = re.findall(r"PLAINTEXT://([^,]+)", kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert conn["extra"]["bootstrap.servers"] in advertised
    assert conn["extra"]["bootstrap.servers"].split(":")[0] == "kafka"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_DEFAULT_REPLICATION_FACTOR"):
        assert kafka[key] == "1"  # a single broker cannot hold more copies
    assert "broker" in kafka["KAFKA_PROCESS_ROLES"] and "controller" in kafka["KAFKA_PROCESS_ROLES"]


def role_connections() -> dict[str, str]:
    """Results connection id -> the PostgreSQL role it must log in as."""
    from sitewatch import names

    return {
        names.POSTGRES_CONN_ID: "sitewatch_owner",
        names.POSTGRES_DRAIN_CONN_ID: names.DRAIN_ROLE,
        names.POSTGRES_ALERTING_CONN_ID: names.ALERTING_ROLE,
        names.POSTGRES_READER_CONN_ID: names.READER_ROLE,
    }


def role_password_var(role: str) -> str:
    """``sitewatch_drain`` -> ``SITEWATCH_PG_DRAIN_PASSWORD`` (sitewatch-roles.psql's names)."""
    return f"SITEWATCH_PG_{role.removeprefix('sitewatch_').upper()}_PASSWORD"


def test_each_results_connection_logs_in_as_its_own_role(services):
    postgres = env_of(services["postgres"])
    for conn_id, role in role_connections().items():
        conn = connection(services, conn_id)
        assert conn["conn_type"] == "postgres"
        assert (conn["host"], conn["port"], conn["schema"]) == ("postgres", 5432, "sitewatch")
        assert conn["login"] == role
        # the postgres service gives the role the same password the connection uses
        assert (
            conn["password"]
            == postgres[role_password_var(role)]
            == SECRETS[role_password_var(role)]
        )
        assert conn["login"] != postgres["POSTGRES_USER"]


def test_airflow_metadata_uses_its_own_role_not_the_superuser(services):
    postgres = env_of(services["postgres"])
    assert postgres["POSTGRES_DB"] == "airflow"
    password = postgres["SITEWATCH_PG_AIRFLOW_PASSWORD"]
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
            assert f"//sitewatch_airflow:{password}@postgres/airflow" in env[key], (name, key)
        # no Airflow container knows the superuser's password
        assert SECRETS["SITEWATCH_PG_ADMIN_PASSWORD"] not in json.dumps(env), name


def test_no_secret_has_a_default(compose, aiven):
    """Every secret is ``${VAR:?message}``: compose refuses to start rather than use a known one."""
    texts = {
        name: (ROOT / name).read_text()
        for name in ("docker-compose.yaml", "docker-compose.aiven.yaml")
    }
    for name, text in texts.items():
        assert "sitewatch-local-only" not in text, name
        for var, op, _ in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?([^}]*)\}", text):
            secret = re.search(r"PASSWORD|SECRET|FERNET|_CONN$", var)
            if var == "SITEWATCH_ADMIN_PASSWORD" or var in AIVEN_OPTIONAL_VARS.values():
                continue  # empty means "generate one" / "fall back to sitewatch_postgres"
            if secret:
                assert op == ":?", f"{name}: ${{{var}}} must have no default"
    # and no password is written out in the files themselves
    for svc in [*compose["services"].values(), *aiven["services"].values()]:
        for key, value in (svc.get("environment") or {}).items():
            if (
                re.search(r"PASSWORD$|SECRET$|FERNET_KEY$", key)
                and key != "SITEWATCH_ADMIN_PASSWORD"
            ):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), key
            if key.startswith("AIRFLOW_CONN_") and str(value).lstrip().startswith("{"):
                password = json.loads(interpolate(str(value), SECRETS)).get("password")
                assert password is None or password in SECRETS.values(), key


@pytest.mark.parametrize("missing", SECRET_VARS)
def test_compose_refuses_to_start_without_each_secret(services, missing):
    secrets = {k: v for k, v in SECRETS.items() if k != missing}
    users = [n for n, svc in services.items() if missing in json.dumps(svc.get("environment"))]
    assert users, f"{missing} is used by no service"
    for name in users:
        with pytest.raises(KeyError, match=rf"{missing} is required: .*docker/new-env\.sh"):
            env_of(services[name], secrets=secrets)


def test_new_env_writes_every_required_secret_privately_and_keeps_existing_ones(tmp_path, services):
    env_file = tmp_path / ".env"
    env_file.write_text("AIRFLOW_UID=1000\nAIRFLOW_JWT_SECRET=mine")  # no final newline
    subprocess.run([ROOT / "docker/new-env.sh", env_file], check=True, capture_output=True)
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert values["AIRFLOW_UID"] == "1000" and values["AIRFLOW_JWT_SECRET"] == "mine"
    assert set(SECRET_VARS) <= set(values)
    generated = [values[name] for name in SECRET_VARS if name != "AIRFLOW_JWT_SECRET"]
    assert len(set(generated)) == len(generated)
    for value in generated:
        assert re.fullmatch(r"[A-Za-z0-9_=-]{24,}", value), value  # URL- and JSON-safe
    from cryptography.fernet import Fernet

    Fernet(values["AIRFLOW_FERNET_KEY"].encode())  # a valid key
    for svc in services.values():
        env_of(svc, secrets=values)  # nothing missing
    before = env_file.read_text()
    subprocess.run([ROOT / "docker/new-env.sh", env_file], check=True, capture_output=True)
    assert env_file.read_text() == before


# --- the roles made on the postgres volume ----------------------------------------------------


def roles_sql() -> str:
    return (ROOT / "docker/postgres/sitewatch-roles.psql").read_text()


def test_the_postgres_init_script_makes_the_roles_and_the_results_database(services):
    initdb_d = "/docker-entrypoint-initdb.d"
    (initdb,) = [b for b in binds(services["postgres"]) if b["target"] == initdb_d]
    folder = ROOT / initdb["source"]
    # the image runs *.sh and *.sql there; our psql files are included, not run on their own
    (script,) = [p for p in folder.iterdir() if p.suffix in (".sh", ".sql")]
    assert script.stat().st_mode & 0o111, "the init script must be executable"
    text = script.read_text()
    assert "sitewatch-roles.psql" in text
    assert "results_db=sitewatch" in text and "airflow_db=airflow" in text
    sql = roles_sql()
    assert re.search(r"CREATE DATABASE %I OWNER sitewatch_owner", sql)
    postgres = env_of(services["postgres"])
    for role in {*role_connections().values(), "sitewatch_airflow"}:
        assert f"'{role}'" in sql, role  # created
        assert re.search(rf"ALTER ROLE {role}\s+LOGIN NOSUPERUSER\b", sql), role
        variable = role_password_var(role)
        assert rf"\getenv {role.removeprefix('sitewatch_')}_password {variable}" in sql
        assert postgres[variable] == SECRETS[variable]  # handed to the init script


def test_the_roles_can_connect_only_where_they_must():
    sql = roles_sql()
    assert 'REVOKE CONNECT ON DATABASE :"airflow_db" FROM PUBLIC' in sql
    assert 'REVOKE CONNECT ON DATABASE :"results_db" FROM PUBLIC' in sql
    (granted,) = re.findall(r'GRANT CONNECT ON DATABASE :"results_db" TO ([^;]+);', sql)
    from sitewatch.names import ALERTING_ROLE, DRAIN_ROLE, READER_ROLE

    assert {r.strip() for r in granted.split(",")} == {DRAIN_ROLE, ALERTING_ROLE, READER_ROLE}
    assert 'ALTER DATABASE :"airflow_db" OWNER TO sitewatch_airflow' in sql
    assert 'ALTER DATABASE :"results_db" OWNER TO sitewatch_owner' in sql


def test_topic_is_the_one_the_code_publishes_to(services):
    from sitewatch.names import DEFAULT_TOPIC

    for name in AIRFLOW_SERVICES:
        assert env_of(services[name])["SITEWATCH_TOPIC"] == DEFAULT_TOPIC
        assert env_of(services[name], {"SITEWATCH_TOPIC": "t"})["SITEWATCH_TOPIC"] == "t"
    assert env_of(services["airflow-init"])["SITEWATCH_TOPIC_PARTITIONS"] == "3"


def test_init_runs_the_migration_and_the_setup_script(services):
    init = services["airflow-init"]
    script = " ".join(init["command"])
    assert "airflow db migrate" in script
    (setup,) = [b for b in binds(init) if b["target"].endswith("airflow_init.py")]
    assert (ROOT / setup["source"]).is_file()
    assert setup["target"] in script


# --- mounts and the editable install ----------------------------------------------------------


def test_project_folders_are_mounted_into_every_airflow_container(services):
    for name in AIRFLOW_SERVICES:
        mounted = {b["target"]: b["source"] for b in binds(services[name])}
        for folder in ("dags", "include", "plugins"):
            assert mounted.get(f"/opt/airflow/{folder}") == f"./{folder}", (name, folder)


def test_mounted_host_paths_exist(services):
    for name, svc in services.items():
        for bind in binds(svc):
            # git keeps no empty folder: a mount may ask compose to create it (plugins/)
            local = bind["source"] in LOCAL_FILES  # the user makes it (docs/metrics.md)
            assert bind["create"] or local or (ROOT / bind["source"]).exists(), (name, bind)
    assert (ROOT / "dags").is_dir() and (ROOT / "include/sitewatch").is_dir()


def test_sites_file_is_read_from_the_mounted_include(services):
    for name in AIRFLOW_SERVICES:
        path = env_of(services[name])["SITEWATCH_SITES_FILE"]
        mounted = {b["target"]: b["source"] for b in binds(services[name])}
        target = "/opt/airflow/include"
        assert path.startswith(target + "/")
        assert (ROOT / mounted[target] / path[len(target) + 1 :]).is_file()


def test_editable_install_resolves_to_the_mounted_include():
    with open(ROOT / "pyproject.toml", "rb") as handle:
        (where,) = tomllib.load(handle)["tool"]["setuptools"]["packages"]["find"]["where"]
    text = dockerfile()
    project = re.search(r"pip install [^\n]*-e\s+(\S+)", text).group(1)
    assert re.search(rf"COPY\b[^\n]*\binclude/?\s+{re.escape(project)}/{where}/?\s*$", text, re.M)
    assert re.search(r"-c\s+\S*constraints\.txt", text)
    # the editable install puts PROJECT/include on sys.path: the include mount's target
    assert f"{project}/{where}" == "/opt/airflow/include"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", "certs/", ".venv/", ".state/", ".git"):
        assert entry in ignored


# --- the Aiven override -----------------------------------------------------------------------


def test_aiven_override_mounts_the_certs_in_every_airflow_container(aiven):
    for name in AIRFLOW_SERVICES:
        (certs,) = [b for b in binds(aiven["services"][name]) if b["target"] == CERTS_TARGET]
        assert certs["source"] == "./certs"
        assert certs["read_only"]
        assert not certs["create"]  # a missing ./certs must fail loudly, not mount empty


def test_aiven_override_takes_both_connections_from_env(aiven):
    sample = {
        "SITEWATCH_KAFKA_CONN": json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    "bootstrap.servers": "kafka-x.aivencloud.com:12345",
                    "security.protocol": "SSL",
                    "ssl.ca.location": f"{CERTS_TARGET}/ca.pem",
                },
            }
        ),
        "SITEWATCH_POSTGRES_CONN": json.dumps({"conn_type": "postgres", "host": "pg-x"}),
    }
    for name in AIRFLOW_SERVICES:
        raw = aiven["services"][name]["environment"]
        for variable, source in AIVEN_VARS.items():
            assert re.fullmatch(rf"\$\{{{source}(:[?-][^}}]*)?\}}", raw[variable]), raw[variable]
        env = env_of(aiven["services"][name], sample)
        assert json.loads(env["AIRFLOW_CONN_SITEWATCH_KAFKA"])["conn_type"] == "kafka"
        assert json.loads(env["AIRFLOW_CONN_SITEWATCH_POSTGRES"])["conn_type"] == "postgres"
        with pytest.raises(KeyError, match="SITEWATCH_KAFKA_CONN"):
            env_of(aiven["services"][name], {})  # compose refuses to start without them


def test_aiven_override_points_the_narrower_connections_away_from_the_local_postgres(aiven):
    """Unset, they are empty: Airflow then finds no such connection, and sitewatch falls back to
    sitewatch_postgres (Aiven); never the local database's roles of docker-compose.yaml."""
    for name in AIRFLOW_SERVICES:
        raw = aiven["services"][name]["environment"]
        for variable, source in AIVEN_OPTIONAL_VARS.items():
            assert re.fullmatch(rf"\$\{{{source}:-\}}", raw[variable]), raw[variable]
        assert all(
            env_of(aiven["services"][name], {**dict.fromkeys(AIVEN_VARS.values(), "{}")})[v] == ""
            for v in AIVEN_OPTIONAL_VARS
        )


def test_aiven_override_turns_off_the_local_kafka(services, aiven):
    assert aiven["services"]["kafka"].get("profiles")
    for name, svc in services.items():
        if "kafka" in (svc.get("depends_on") or {}):
            override = aiven["services"][name]["depends_on"]["kafka"]
            assert override["required"] is False, name
            assert override["condition"] == svc["depends_on"]["kafka"]["condition"]


# --- docker/airflow_init.py -------------------------------------------------------------------


@pytest.fixture(scope="module")
def init_script():
    spec = importlib.util.spec_from_file_location("airflow_init", ROOT / "docker/airflow_init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_accepts_the_connections_compose_defines(services, init_script, monkeypatch):
    for variable in AIVEN_VARS:
        value = env_of(services["airflow-init"])[variable]
        monkeypatch.setenv(variable, value)
    init_script.check_connections()


def test_init_names_a_connection_of_the_wrong_type(init_script, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", '{"conn_type": "kafka", "extra": {}}')
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES", '{"conn_type": "mysql", "host": "h"}')
    with pytest.raises(init_script.InitError, match="AIRFLOW_CONN_SITEWATCH_POSTGRES.*'mysql'"):
        init_script.check_connections()


def test_init_checks_the_narrower_connections_when_they_are_set(services, init_script, monkeypatch):
    env = env_of(services["airflow-init"])
    for variable, value in env.items():
        if variable.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(variable, value)
    init_script.check_connections()  # all four results connections resolve, type postgres
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES_READER", '{"conn_type": "mysql"}')
    with pytest.raises(init_script.InitError, match="SITEWATCH_POSTGRES_READER.*'mysql'"):
        init_script.check_connections()
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES_READER", "")  # unset: falls back
    init_script.check_connections()


def test_init_names_a_connection_that_is_not_json(init_script, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", '{"conn_type": "kafka", extra: {}}')
    with pytest.raises(init_script.InitError, match="AIRFLOW_CONN_SITEWATCH_KAFKA is not valid"):
        init_script.check_connections()


def test_init_seeds_the_admin_password_keeping_other_users(init_script, tmp_path):
    path = tmp_path / "passwords.json"
    init_script.seed_admin_password(path, "admin", "first")
    path.write_text(json.dumps({**json.loads(path.read_text()), "viewer": "v"}))
    init_script.seed_admin_password(path, "admin", "second")
    assert json.loads(path.read_text()) == {"admin": "second", "viewer": "v"}


# --- the metrics profile: Prometheus and Grafana (docs/metrics.md) -----------------------------


def test_the_metrics_services_run_only_in_their_profile(services):
    for name in METRICS_SERVICES:
        assert services[name]["profiles"] == [METRICS_PROFILE], name
    in_profile = {n for n, svc in services.items() if METRICS_PROFILE in svc.get("profiles", [])}
    assert in_profile == set(METRICS_SERVICES)
    for name, svc in services.items():  # a plain `up` never pulls them in
        assert not set(svc.get("depends_on") or {}) & set(METRICS_SERVICES), name


def test_the_metrics_images_are_pinned_to_their_major_versions(services):
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", services["grafana"]["image"])


def test_the_metrics_services_publish_on_their_own_bind_address(services):
    """Neither asks for a login, so opening the UI (SITEWATCH_BIND) must not open them."""
    for name, port in METRICS_SERVICES.items():
        (published,) = services[name]["ports"]
        assert interpolate(published) == f"127.0.0.1:{port}:{port}"
        assert interpolate(published, {"SITEWATCH_BIND": "0.0.0.0"}) == f"127.0.0.1:{port}:{port}"
        opened = interpolate(published, {"SITEWATCH_METRICS_BIND": "10.0.0.5"})
        assert opened == f"10.0.0.5:{port}:{port}"


def test_a_plain_up_needs_no_metrics_variable(services):
    """Compose interpolates services of every profile: a required variable there would stop
    `docker compose up` for everyone."""
    for name in METRICS_SERVICES:
        interpolate(json.dumps(services[name]), {})  # no KeyError
    env = env_of(services["airflow-apiserver"])
    assert env["SITEWATCH_METRICS_TOKEN"] == ""  # no static token: Airflow API tokens only
    assert env["SITEWATCH_METRICS_ANONYMOUS"] == "false"


def test_only_the_api_server_knows_the_scrape_token_and_only_from_the_env(services):
    raw = services["airflow-apiserver"]["environment"]
    assert raw["SITEWATCH_METRICS_TOKEN"] == "${SITEWATCH_METRICS_TOKEN:-}"  # never a literal
    env = env_of(services["airflow-apiserver"], {"SITEWATCH_METRICS_TOKEN": "t0ken"})
    assert env["SITEWATCH_METRICS_TOKEN"] == "t0ken"
    for name, svc in services.items():
        if name != "airflow-apiserver":
            assert "SITEWATCH_METRICS_TOKEN" not in (svc.get("environment") or {}), name


def test_the_metrics_mounts_are_read_only_files_of_the_repo_or_the_users_token(services):
    for name in METRICS_SERVICES:
        for bind in binds(services[name]):
            assert bind["read_only"], (name, bind)
            if bind["source"] in LOCAL_FILES:
                assert not bind["create"], bind  # missing: fail, not an empty folder
            else:
                assert (ROOT / bind["source"]).exists(), (name, bind)


def test_the_users_files_are_git_ignored():
    for path in LOCAL_FILES:
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert done.returncode == 0, f"{path} is not git-ignored"


def mounted_at(service: dict, target: str) -> str:
    """The host source of the bind mount at ``target``."""
    (source,) = [b["source"] for b in binds(service) if b["target"] == target]
    return source


def test_prometheus_scrapes_the_plugins_path_on_the_api_server(services):
    job = scrape_job()
    assert job["metrics_path"] == metrics_path()
    assert job.get("scheme", "http") == "http"
    ((target,),) = [c["targets"] for c in job["static_configs"]]
    host, port = target.rsplit(":", 1)
    assert command_words(services[host])[:1] == ["api-server"]
    (published,) = services[host]["ports"]
    assert interpolate(published).rsplit(":", 1)[1] == port  # the port it listens on


def test_prometheus_reads_its_config_rules_and_token_from_the_mounts(services):
    prometheus = services["prometheus"]
    assert ROOT / mounted_at(prometheus, "/etc/prometheus/prometheus.yml") == PROMETHEUS_YML
    (rules,) = prometheus_config()["rule_files"]
    assert ROOT / mounted_at(prometheus, rules) == ALERTS_YML
    authorization = scrape_job()["authorization"]
    assert authorization["type"] == "Bearer"
    assert "credentials" not in authorization  # the token never sits in the config
    assert mounted_at(prometheus, authorization["credentials_file"]) in LOCAL_FILES


def test_prometheus_config_and_rules_pass_promtool():
    # --syntax-only: the token file is the user's, and the rules file sits elsewhere in Docker
    promtool("check", "config", "--syntax-only", PROMETHEUS_YML)
    promtool("check", "rules", ALERTS_YML)


def test_the_alert_rules_use_only_metrics_of_families_and_the_scrape_job():
    (group,) = yaml.safe_load(ALERTS_YML.read_text())["groups"]
    for rule in group["rules"]:
        expr = rule["expr"]
        assert metric_names(expr) <= FAMILY_BY_NAME.keys(), rule["alert"]
        for job in re.findall(r'\bup\{job="([^"]+)"\}', expr):
            assert job == scrape_job()["job_name"], rule["alert"]
        assert rule["for"] and rule["labels"]["severity"] and rule["annotations"]["summary"]


def test_grafana_is_read_only_without_a_login(services):
    env = env_of(services["grafana"], secrets={})
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    assert env["GF_AUTH_BASIC_ENABLED"] == "false"
