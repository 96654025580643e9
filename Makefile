# mastok: `make dev` to try it locally, `make test` to run every test. Both set up what they need.
PYTHON ?= python3
VENV := .venv
OTREE_VENV := .venv-otree
OTREE_VERSION := 6.0.15
BIN := $(VENV)/bin

.PHONY: dev test lint typecheck pytest otree-venv venv chromium wrk clean bench lock image-test

dev: venv otree-venv
	$(BIN)/mastok dev

test: venv otree-venv chromium lint typecheck pytest

venv: $(VENV)/.installed
otree-venv: $(OTREE_VENV)/bin/otree

# The versions pinned by requirements-dev.lock (`make lock`): a new release of a linter or a
# library cannot change what `make test` runs until the lock is made again.
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# oTree pins old versions of Starlette and SQLAlchemy: it lives in a virtual environment of its own.
$(OTREE_VENV)/bin/otree:
	test -x $(OTREE_VENV)/bin/python || $(PYTHON) -m venv $(OTREE_VENV)
	$(OTREE_VENV)/bin/pip install --quiet otree==$(OTREE_VERSION)

lint: venv
	$(BIN)/ruff check mastok tests demo bench
	$(BIN)/ruff format --check mastok tests demo bench

typecheck: venv
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
chromium:
	sh scripts/install-chromium.sh

pytest: venv otree-venv chromium
	$(BIN)/pytest $(PYTEST_ARGS)

# Benchmarks (not part of `make test`): bench/README.md. About 15 minutes (895 s on the last full run); writes bench/results/latest.*
bench: venv otree-venv wrk $(VENV)/.bench-installed bench/node_modules/.installed
	$(BIN)/python -m bench all $(BENCH_ARGS)

# The logging scenario's HTTP load generator (Debian's wrk).
wrk:
	sh scripts/install-wrk.sh

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

bench/node_modules/.installed: bench/package.json bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The pinned dependencies from pyproject.toml, with pip-tools: the image's (requirements.lock)
# and the development environment's (requirements-dev.lock, with the `dev` extra).
lock: venv
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--extra dev --output-file requirements-dev.lock pyproject.toml

# Builds the images and runs deploy/compose.yml as README's "Deploying with containers" says,
# with scripted people through its public entry (podman and podman-compose; on a machine without
# a registry, `. deploy/sandbox-prelude.sh` first).
image-test: venv
	PYTHON=$(CURDIR)/$(BIN)/python bash deploy/image-test.sh

clean:
	rm -rf $(VENV) $(OTREE_VENV) .pytest_cache .mypy_cache .ruff_cache
