# The template repository's own tasks. Needs Python 3.11+ and make; installs the rest into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR := build/demo
PYTEST_WORKERS ?= auto

.DEFAULT_GOAL := help
.PHONY: help install lint test quick demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed ## the template's dev tools in .venv

lint: $(BIN)/.installed ## ruff and mypy on the hooks and the template's tests
	$(BIN)/ruff check hooks tests
	$(BIN)/ruff format --check hooks tests
	$(BIN)/mypy

test: lint ## the full suite: render checks, hooks, generated projects on real Redis, cruft
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

quick: $(BIN)/.installed ## everything but installing and running generated projects (< 1 min)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

demo: $(BIN)/.installed ## generate a project with the defaults and start it
	rm -rf $(DEMO_DIR)
	$(BIN)/cookiecutter . --no-input --output-dir $(DEMO_DIR)
	$(MAKE) -C $(DEMO_DIR)/redis-service install
	@if $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 6379), 1)" 2>/dev/null; then \
		echo "Redis answers on localhost:6379: the service uses it."; \
		echo "Open http://127.0.0.1:8000/docs"; \
		$(MAKE) -C $(DEMO_DIR)/redis-service run; \
	else \
		echo "No Redis on localhost:6379: the service uses the in-process memory:// Redis."; \
		echo "Open http://127.0.0.1:8000/docs"; \
		REDIS_URL=memory:// $(MAKE) -C $(DEMO_DIR)/redis-service run; \
	fi

clean: ## remove .venv, caches and the demo project
	rm -rf $(VENV) .cache build
