# The guide's commands. Everything runs inside .venv, which the first command creates.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CODE := snippets tests browser_tests tools examples migrations notebooks site

.PHONY: install run test test-lab site test-site bench bench-web migrate lint typecheck lab worker taskiq-worker pgbouncer replica replica-stop strip clean

## install: create .venv if missing and install the project with its notebook and test tools
install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $@

## run: execute every notebook (embedded SQLite unless DATABASE_URL is set) into build/notebooks
run: install
	$(BIN)/python tools/run_notebooks.py

## test: lint, type check, unit tests, and every notebook run twice in one kernel, in parallel
test: lint typecheck
	$(BIN)/python -m pytest -n auto --dist loadgroup

## test-lab: every notebook in JupyterLab, Run All in headless Chromium (Debian's chromium
## package); screenshots in build/lab/
test-lab: install
	$(BIN)/python -m pytest browser_tests/test_lab.py -v

## site: the website of the executed notebooks in build/site (open build/site/index.html);
## reads what `make run` wrote to build/notebooks and executes nothing
site: install
	$(BIN)/python tools/build_site.py

## test-site: the website in headless Chromium (every page, output, image and link, the
## search); screenshots in build/site-shots/. Run `make run site` first.
test-site: install
	$(BIN)/python -m pytest browser_tests/test_site.py -v

## bench: the bulk-loading ladder of notebook 10 at 100,000 rows on the current backend;
## writes build/bench/bulk.json and bulk.png, exit 1 if a PostgreSQL target is missed
bench: install
	$(BIN)/python tools/bench.py

## bench-web: TechEmpower's database tests (/db, /queries, /fortunes, /updates) against four
## apps (raw driver, the guide's way, tuned Core, sync SQLModel) under uvicorn, loaded by wrk
## (apt-get install -y wrk), on DATABASE_URL's backend; writes build/bench/web.json and web.png,
## exit 1 if a PostgreSQL target is missed. Options: make bench-web ARGS="--seconds 5 --target-seconds 15"
bench-web: install
	@command -v wrk >/dev/null || { echo "make bench-web needs wrk: apt-get install -y wrk" >&2; exit 2; }
	$(BIN)/python tools/bench_web.py $(ARGS)

## migrate: upgrade the database of DATABASE_URL (the SQLite default if unset) to the newest
## revision of migrations/; other alembic commands: .venv/bin/alembic --help
migrate: install
	$(BIN)/alembic upgrade head

lint: install
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: install
	$(BIN)/mypy

## lab: open JupyterLab on the notebooks with the project's environment as kernel
lab: install
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

## worker: a Celery worker of chapter 16's demo jobs, on the embedded default (or DATABASE_URL),
## with the Redis on 127.0.0.1:6379 as broker (or CELERY_BROKER_URL); Ctrl-C stops it
worker: install
	$(BIN)/python tools/start_worker.py celery

## taskiq-worker: a taskiq worker of chapter 17's demo jobs, relaying the outbox, on the embedded
## default (or DATABASE_URL), with the Redis on 127.0.0.1:6379 (or TASKIQ_BROKER_URL)
taskiq-worker: install
	$(BIN)/python tools/start_worker.py taskiq

## pgbouncer: start a PgBouncer on 127.0.0.1:6432 (transaction pooling) in front of the local
## PostgreSQL, for notebook 07; needs Debian's pgbouncer package
pgbouncer:
	bash tools/pgbouncer.sh

## replica: start the read-replica pairs (PostgreSQL 5434 -> 5433, MariaDB 3308 -> 3307), files
## under build/replicas; the machine's own servers are not touched
replica:
	bash tools/replicas.sh start

## replica-stop: stop the pairs that make replica started
replica-stop:
	bash tools/replicas.sh stop

## strip: remove outputs and execution counts from the notebooks before committing
strip: install
	$(BIN)/nbstripout notebooks/*.ipynb

## clean: remove executed notebooks, SQLite files and caches (keeps .venv)
clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
