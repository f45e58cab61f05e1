# streetwatch: `make demo` runs the pipeline on the demo site, `make test` runs the test suite.
# Both create .venv/ and install everything the project needs (Python packages from PyPI,
# Debian's mosquitto when it is missing).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo soak bench lint format system-deps clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] \
	    || ! command -v mosquitto_pub >/dev/null 2>&1; then \
	  echo "installing Debian's mosquitto and mosquitto-clients"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mosquitto mosquitto-clients; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP) system-deps lint
	$(PY) -m pytest -m "not soak" -q

soak: $(STAMP) system-deps
	$(PY) -m pytest -m soak -q

bench: $(STAMP) system-deps
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

demo: $(STAMP) system-deps
	$(PY) -m streetwatch.demo

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
