# Two commands: `make run` sets everything up and runs the chain on sample data;
# `make test` runs the whole test suite. Both create .venv first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: run test clean

run: $(VENV)/.installed
	$(BIN)/greenery sample
	$(BIN)/greenery run

test: $(VENV)/.installed
	scripts/test-services.sh
	$(BIN)/pytest

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) warehouse .dagster dbt_project/target dbt_project/logs
