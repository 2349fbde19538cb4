# make demo   - install everything, start Kafka + Elasticsearch, replay the sample bars,
#               run the Spark stream job (it indexes them) while the questions it serves are
#               trained, stream the last bars and print the live predictions beside the actual
#               closes, then the full training report (scripts/demo.sh: each step's duration)
# make test   - the linter, then unit and integration tests (starts the local stack)
# make lint   - ruff (pyproject.toml [tool.ruff])
# make bench   - throughput of the stream job beside the alternatives (1M bars), then latency
#               (bench/results/; BENCH_ARGS="--bars 100000" for a shorter run)
# make bench-latency - produce -> searchable latency of bars and predictions (bench/results/)
# make bench-live  - live feed latency, bar close -> Kafka: REST polling vs WebSocket (fake servers)
# make bench-soak  - the stream job with predictions at 200 bars/s for 30 min: latency, memory, state, lag
#                   (SOAK_ARGS="--minutes 10 --report-minutes 1" for a shorter run)
# make cluster-up     - a Spark standalone master and 2 workers on this machine (spark://127.0.0.1:7077)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install up down status cluster-up cluster-down demo lint test unit integration bench bench-latency bench-live bench-soak mlflow-ui browser clean distclean

install: $(STAMP)
	@stack/fetch.sh all

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	@command -v mvn >/dev/null || { echo "installing Maven (fetches the JVM artifacts)"; apt-get update -qq && apt-get install -y -qq maven >/dev/null; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip setuptools wheel
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $(STAMP)

up: install
	@stack/up.sh

down:
	@stack/down.sh

status:
	@stack/status.sh

cluster-up: install
	@stack/spark-cluster.sh start

cluster-down:
	@stack/spark-cluster.sh stop

demo: up
	@scripts/demo.sh

unit: install
	$(VENV)/bin/pytest -m "not integration" tests

integration: up browser
	$(VENV)/bin/pytest -m integration tests

lint: install
	$(VENV)/bin/ruff check .

test: lint up browser
	$(VENV)/bin/pytest --durations=30 tests

bench: up
	$(VENV)/bin/python -m bench.compare $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.latency

bench-latency: up
	$(VENV)/bin/python -m bench.latency

bench-live: up
	$(VENV)/bin/python -m bench.live_latency --poll-seconds 60,10 $(LIVE_ARGS)

bench-soak: up
	$(VENV)/bin/python -m bench.soak $(SOAK_ARGS)

# MLflow's UI on this checkout's tracking store (or MLFLOW_TRACKING_URI's), on 127.0.0.1
mlflow-ui: install
	$(VENV)/bin/python -m finstream.models ui --port $(or $(MLFLOW_PORT),5000)

# Debian's Chromium, for the test that opens the MLflow UI in a real browser
browser:
	stack/chromium.sh

clean: down
	rm -rf .local

distclean: clean
	rm -rf $(VENV)
