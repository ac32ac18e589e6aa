# sitewatch developer entry points; the work is done by scripts/dev.sh.
.PHONY: run test stop services env bench bench-deps lint

run:        ## start Kafka, PostgreSQL and Airflow with the UI on http://localhost:8080, the status pages on http://localhost:8090 (SITEWATCH_EXECUTOR=celery: with Redis and Celery workers per location)
	@scripts/dev.sh run

test:       ## start the services (Redis too) and run every test suite against them
	@scripts/dev.sh test

stop:       ## stop everything started from this checkout, either executor, and the status page server
	@scripts/dev.sh stop

services:   ## start only Kafka and PostgreSQL (and Redis for Celery) and write .state/env.sh
	@scripts/dev.sh services

env:        ## print the environment for the airflow CLI and psql
	@scripts/dev.sh env

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports

PART ?= all
bench: bench-deps  ## benchmarks beside their baselines -> bench/results.md (PART=drain|probe|flow|parse|sustained|metrics|burn|status|report)
	@bench/run.sh $(PART)

bench-deps:  # bench-only packages (dag-factory, matplotlib) into bench/out/deps, not the project's
	@[ -f bench/out/deps/.installed ] && cmp -s bench/requirements.txt bench/out/deps/.installed || \
	  { .venv/bin/pip install -q --no-deps --target bench/out/deps -r bench/requirements.txt && \
	    cp bench/requirements.txt bench/out/deps/.installed; }
