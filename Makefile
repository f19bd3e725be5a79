# Two commands: `make run` sets everything up and runs the chain on sample data;
# `make test` runs the whole test suite. Both create .venv first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: run test clean lock

run: $(VENV)/.installed
	$(BIN)/greenery sample
	$(BIN)/greenery run

test: $(VENV)/.installed
	scripts/test-services.sh
	$(BIN)/pytest

# Versions come from constraints.txt, the lock that CI and the Dockerfile install from too.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "Installing Python packages into $(VENV) from constraints.txt (a few minutes the first time)..."
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $@

# Re-resolve every dependency to the newest release pyproject.toml allows, in a throwaway venv,
# and write the result to constraints.txt; then `make test` and commit both.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet '.[dev]'
	{ echo "# The one lock: every version make, CI and the Dockerfile install. Refresh with \`make lock\`."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^greenery-orchestration'; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) warehouse .dagster docs-site dbt_project/target dbt_project/logs
