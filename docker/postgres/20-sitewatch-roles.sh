#!/usr/bin/env bash
# Run by the postgres image once, as its superuser, on an empty data volume
# (docker-entrypoint-initdb.d, after the "airflow" database exists): sitewatch's roles and its
# results database, from sitewatch-roles.psql with the passwords in this container's environment.
# Idempotent: docs/docker.md runs it by hand to bring a volume made before these roles up to them.
psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v admin="$POSTGRES_USER" -v airflow_db=airflow -v results_db=sitewatch \
  -f "$(dirname "${BASH_SOURCE[0]}")/sitewatch-roles.psql"
