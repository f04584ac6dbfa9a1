# GradeFlow: every target sets up what it needs by itself.
#   make demo     run a whole sample exam day through Airflow on the embedded stack
#   make test     run the test suite (unit, integration, end-to-end) in parallel, one embedded stack per worker
#   make test-celery  a night for three institutions on the CeleryExecutor with two workers (needs redis-server)
#   make bench-night  a compressed night for many institutions under the real scheduler, Local vs Celery
#   make airflow  Airflow standalone (UI on http://localhost:8080) on the embedded stack
#   make evaluate model vs human agreement: CSV=answers.csv [ARGS="--base-url URL --model M"], or sample data
#   make thresholds INST=<id> [ARGS="--days 90"]  which min_confidence buys which accuracy, from the database
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-celery bench-night lint airflow stack-up stack-down migrate lock bench clean evaluate thresholds

venv: $(STAMP)

$(STAMP): requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.lock
	touch $@

demo: venv
	$(PY) -m devstack.demo

evaluate: venv
ifdef CSV
	PYTHONPATH=plugins $(PY) -m gradeflow.admin.evaluate $(CSV) $(ARGS)
else
	$(PY) -m devstack.evaluate_demo
endif

# The institution's threshold table from the database its Airflow connection gradeflow_db_<id> names
# (AIRFLOW_CONN_GRADEFLOW_DB_<ID>; for the embedded stack: eval "$$(.venv/bin/python -m devstack.stack env)").
thresholds: venv
	@test -n "$(INST)" || { echo "usage: make thresholds INST=<institution id> [ARGS=\"--days 90\"]" >&2; exit 2; }
	PYTHONPATH=plugins $(PY) -m gradeflow.admin.thresholds --institution $(INST) $(ARGS)

# One pytest-xdist worker more than the machine has cores (3 on 2 cores): the suite waits on real time for about a
# fifth of its run (deadlines, the emulator's batch phases, lock timeouts, Airflow's own one-second loop, Chromium), and
# the extra worker fills those waits (2026-12-08, 2 cores, same code: 100.5 / 103.1 s against 107.0-111.4 s with two
# workers; docs/performance.md). --dist loadfile keeps a module (and its module-scoped fixtures, such as the e2e day
# through Airflow) on one worker. TEST_WORKERS=2 gives each worker more of a core; TEST_WORKERS=auto one per core.
# A worker that crashes (a segmentation fault in a library, os._exit) fails the run at once, naming the test it
# ran: xdist's replacement worker would run the crashing test again, and under loadfile can wait forever for work
# (pytest-xdist issues 784, 1323, 1378).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
test: venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --max-worker-restart 0

# The Celery tier: a real scheduler, triggerer, DAG processor, API server, Redis (Debian's redis-server) and two
# `airflow celery worker`s on the embedded stack (tests/celery; docs/scale-out.md). .ci/run runs it after make test.
test-celery: venv
	$(PY) -m pytest -m celery tests/celery -p no:xdist

ANSWERS ?= 100000
BIG_ROWS ?= 30000
bench: venv
	$(PY) -m devstack.bench --answers $(ANSWERS)
	$(PY) -m devstack.bench_ingest --case big_rows --rows $(BIG_ROWS)
	$(PY) -m devstack.bench_ingest --case reviews --rows 100000

# The night for many institutions under the real scheduler, LocalExecutor then CeleryExecutor (two workers):
# scheduling delay and total, into bench-output/bench.json under "night" (devstack/bench_night.py).
NIGHT_INSTITUTIONS ?= 10
NIGHT_SUBMISSIONS ?= 4
bench-night: venv
	$(PY) -m devstack.bench_night --institutions $(NIGHT_INSTITUTIONS) --submissions $(NIGHT_SUBMISSIONS)

lint: venv
	$(VENV)/bin/ruff check .

airflow: venv
	$(PY) -m devstack.airflow_local

stack-up: venv
	$(PY) -m devstack.stack up

migrate: venv
	$(PY) -m devstack.stack migrate

stack-down: venv
	$(PY) -m devstack.stack down

lock: venv
	$(VENV)/bin/uv pip compile requirements-dev.txt -o requirements.lock --python-version 3.11 --no-header

clean: stack-down
	rm -rf .devstack .devstack-evaluate .devstack-bench-night demo-output bench-output
