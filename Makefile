# The template repository's own tasks. Needs Python 3.11+ and make; everything else comes
# from uv.lock (uv itself is installed into .tools from the package index when missing).
PYTHON ?= python3
UV_VERSION := 0.13.9
UV ?= $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
STAMP := .venv/.synced
DEMO_DIR := build/demo
PYTEST_WORKERS ?= auto

.DEFAULT_GOAL := help
.PHONY: help uv install lock lint test quick upgrade-check bench bench-load demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

uv: | $(UV) ## uv itself (from PATH, else installed into .tools)

# Re-synced only when the lock or pyproject.toml changed.
$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked
	touch $@

install: $(STAMP) ## the template's dev tools in .venv, exactly as uv.lock says

lock: | $(UV) ## upgrade the template's dev tools within pyproject.toml's ranges, on purpose
	$(UV) lock --upgrade

lint: $(STAMP) ## ruff and mypy on the hooks, the template's tests and tools
	$(UV) run --locked ruff check hooks tests tools bench
	$(UV) run --locked ruff format --check hooks tests tools bench
	$(UV) run --locked mypy

test: lint ## the full suite: render checks, hooks, generated projects on real Redis, cruft
	$(UV) run --locked pytest -n $(PYTEST_WORKERS) --dist loadgroup

quick: $(STAMP) ## everything but installing and running generated projects (~1.5 min)
	$(UV) run --locked pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

upgrade-check: $(STAMP) ## the generated projects on the newest releases, and what moved (online; ~15 min)
	$(UV) run --locked python -m tools.upgrade_check $(ARGS)

bench: $(STAMP) ## our request path beside a naive route and the peer libraries (needs wrk; ~10 min)
	$(UV) run --locked --group bench python bench/compare.py

bench-load: $(STAMP) ## 1,024 connections on the all-on service, and its memory over 100,000 requests (~2 min)
	$(UV) run --locked --group bench python bench/load.py

demo: $(STAMP) ## generate a project with the defaults and start it
	rm -rf $(DEMO_DIR)
	$(UV) run --locked cookiecutter . --no-input --output-dir $(DEMO_DIR)
	$(MAKE) -C $(DEMO_DIR)/redis-service install UV=$(abspath $(UV))
	@if $(PYTHON) -c "import socket; socket.create_connection(('127.0.0.1', 6379), 1)" 2>/dev/null; then \
		echo "Redis answers on localhost:6379: the service uses it."; \
		echo "Open http://127.0.0.1:8000/docs"; \
		$(MAKE) -C $(DEMO_DIR)/redis-service run UV=$(abspath $(UV)); \
	else \
		echo "No Redis on localhost:6379: the service uses the in-process memory:// Redis."; \
		echo "Open http://127.0.0.1:8000/docs"; \
		REDIS_URL=memory:// $(MAKE) -C $(DEMO_DIR)/redis-service run UV=$(abspath $(UV)); \
	fi

clean: ## remove .venv, .tools, caches and the demo project
	rm -rf .venv .tools .cache build
