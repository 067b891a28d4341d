# Brownout developer entry points. Everything runs from a local venv so a
# fresh Debian machine needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTO_SRC := proto/brownout/v1/agent.proto

.PHONY: setup system-deps run console test lint typecheck unit host fuzz soak kernelvm kernelvm-prepare bench bench-full proto install clean

setup: $(STAMP)

$(STAMP): pyproject.toml ext/chaostoolkit-brownout/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps -e ext/chaostoolkit-brownout
	touch $@

# Debian packages the host tier checks the agent's work with (root; see the script).
system-deps:
	bash tests/system-deps.sh

# A local agent and a demo HTTP service; an example experiment through the controller.
run: setup
	$(PY) -m controller.cli.demo

# A local agent and `brownout serve` with the demo experiment; prints the console URL.
console: setup
	$(PY) -m controller.cli.console_demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: setup
	$(PY) -m mypy

# The whole suite: lint, types, the unit tier on every core (pytest-xdist),
# then every other tier except benchmarks. Of those, the `concurrent` modules
# (a service and its agents, waiting on clocks; no resource measured, nothing
# named fixed) run two at a time, a module per worker; the rest run one test
# at a time, alone, since they measure CPU, rates and delays or share the
# host's namespaces, cgroups and ports. As root it first installs the Debian
# packages and prepares the kernel-VM tier. Exit 5 is "nothing selected", for
# PYTEST_ARGS that pick tests of one part only.
test: lint typecheck system-deps
	@if [ "$$(id -u)" = 0 ]; then PY=$(PY) bash tests/kernelvm/prepare.sh >/dev/null; fi
	$(PY) -m pytest -m unit -n auto --durations=10 $(PYTEST_ARGS) || [ $$? = 5 ]
	$(PY) -m pytest -m "concurrent and not bench and not unit" -n 2 --dist loadfile \
		--durations=10 $(PYTEST_ARGS) || [ $$? = 5 ]
	$(PY) -m pytest -m "not concurrent and not bench and not unit" --durations=25 \
		$(PYTEST_ARGS) || [ $$? = 5 ]

unit: setup
	$(PY) -m pytest -m unit -n auto $(PYTEST_ARGS)

host: setup system-deps
	$(PY) -m pytest -m host $(PYTEST_ARGS)

# Ten times the fuzzing `make test` does (2000 examples per RPC and per
# injector), with no per-test time limit. The host half needs root.
fuzz: setup
	BROWNOUT_FUZZ_EXAMPLES=20000 $(PY) -m pytest --timeout=0 \
		tests/unit/test_validator_fuzz.py tests/host/test_fuzz.py $(PYTEST_ARGS)

# The reliability suite at full scale (100 kills per kind, 50 clients x 200
# pairs, a 1 h soak), with no per-test time limit. Needs root; not run in CI.
soak: setup
	BROWNOUT_SOAK=1 $(PY) -m pytest -m reliability --timeout=0 tests/reliability $(PYTEST_ARGS)

# Real netem on Debian's kernel under QEMU (virtme-ng): installs QEMU, busybox,
# kmod and virtme-ng, and caches the kernel in kernelvm-cache/. Needs root.
kernelvm-prepare: setup
	PY=$(PY) bash tests/kernelvm/prepare.sh

kernelvm: setup
	$(PY) -m pytest -m kernelvm -s $(PYTEST_ARGS)

# stress-ng is the CPU and memory peer; iperf3 measures bandwidth. Fleet scale
# at 1,000 to 20,000 agents with 60 s holds (lease datagrams; KeepLeases
# streams beside them at 1,000), the kill switch at 1,000 and 10,000;
# bench-full holds 300 s.
bench: setup
	@if [ "$$(id -u)" = 0 ]; then PY=$(PY) bash tests/kernelvm/prepare.sh >/dev/null; fi
	bash tests/system-deps.sh stress-ng
	$(PY) -m pytest -m bench -s -p no:randomly tests/bench $(PYTEST_ARGS)

bench-full: setup
	bash tests/system-deps.sh stress-ng
	BROWNOUT_FLEET_HOLD_S=300 \
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
