# Brownout developer entry points. Everything runs from a local venv so a
# fresh Debian machine needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTO_SRC := proto/brownout/v1/agent.proto

.PHONY: setup run test lint typecheck unit host bench proto install clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# A local agent and a demo HTTP service; an example experiment through the controller.
run: setup
	$(PY) -m controller.demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: setup
	$(PY) -m mypy

# The whole suite: lint, types, then every tier except benchmarks.
test: lint typecheck
	$(PY) -m pytest -m "not bench" $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

host: setup
	$(PY) -m pytest -m host $(PYTEST_ARGS)

bench: setup
	$(PY) -m pytest -m bench -s -p no:randomly tests/bench $(PYTEST_ARGS)

proto: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto \
		--python_out=proto --grpc_python_out=proto \
		--mypy_out=proto --mypy_grpc_out=proto \
		$(PROTO_SRC)

# /opt/brownout/venv, the systemd unit and /etc/brownout/agent.yaml (ROOT= stages elsewhere).
install:
	systemd/install.sh $(if $(ROOT),--root $(ROOT))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
