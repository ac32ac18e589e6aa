# sitewatch developer entry points; the work is done by scripts/dev.sh.
.PHONY: run test stop services env bench lint

run:        ## start Kafka, PostgreSQL and Airflow with the UI on http://localhost:8080
	@scripts/dev.sh run

test:       ## start the services and run every test suite against them
	@scripts/dev.sh test

stop:       ## stop everything started from this checkout
	@scripts/dev.sh stop

services:   ## start only Kafka and PostgreSQL and write .state/env.sh
	@scripts/dev.sh services

env:        ## print the environment for the airflow CLI and psql
	@scripts/dev.sh env

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .
