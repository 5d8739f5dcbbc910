# Two commands on a fresh machine: `make demo` and `make test`.
# The venv needs Python >= 3.12 (3.13 preferred); scripts/find-python finds one.
VENV := .venv
PY := $(VENV)/bin/python

TS := tests/ts

.PHONY: demo test test-fast bench fuzz validate clean system-deps

$(VENV)/.installed: pyproject.toml scripts/find-python
	@python=$$(scripts/find-python) && echo "using $$python" && $$python -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

demo: $(VENV)/.installed  ## the real mcp-sora behind the proxy, with a scripted agent
	$(PY) -m intercept_addon.demo.run

$(TS)/node_modules/.installed: $(TS)/package.json $(TS)/package-lock.json
	npm ci --prefix $(TS) --no-audit --no-fund --loglevel=error
	@touch $@

system-deps:  ## Debian packages: redis-server, chromium, iptables (shared state, browser, transparent-mode tests)
	scripts/install-system-deps

test: $(VENV)/.installed $(TS)/node_modules/.installed system-deps  ## every test: unit, property-based and end-to-end (real processes)
	scripts/setup-langchain-venv  # .venv-langchain: the LangChain agent of the identity tests (mcp<2)
	scripts/setup-sora-venv  # .venv-sora: the real mcp-sora of the demo, scan and coverage tests (mcp<2)
	$(PY) -m pytest -q -rs

test-fast: $(VENV)/.installed  ## unit tests only, no processes started
	$(PY) -m pytest -q -rs -m "not e2e"

bench: $(VENV)/.installed system-deps  ## engine, state stores (Redis too), proxy, JWT and agent-process lookup benchmarks
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_state.py
	$(PY) bench/bench_proxy.py
	$(PY) bench/bench_tokens.py
	$(PY) bench/bench_local_process.py
	$(PY) bench/bench_arguments.py
	$(PY) bench/bench_stdio.py

FUZZ_SECONDS ?= 300
fuzz: $(VENV)/.installed  ## longer atheris runs than the test suite's (FUZZ_SECONDS per target)
	$(PY) bench/fuzz.py request -max_total_time=$(FUZZ_SECONDS)
	$(PY) bench/fuzz.py sse -max_total_time=$(FUZZ_SECONDS)

validate: $(VENV)/.installed
	$(PY) -m intercept_addon validate policies/*.yaml

clean:
	rm -rf $(VENV) .venv-sora .venv-langchain $(TS)/node_modules
