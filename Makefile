# chainrule: the commands the README names. `make run` and `make test` set up a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS_STAMP := tools/node_modules/.installed
WEB_STAMP := web/node_modules/.installed
BUF := tools/node_modules/.bin/buf
SETUP_LOG := build/setup.log
# `make run HOST=... GRPC_PORT=... HTTP_PORT=...` passes these as flags; without them the server's
# settings apply: CHAINRULE_* from the environment, else 127.0.0.1, 50051 and 8080.
RUN_FLAGS = $(if $(filter command line,$(origin HOST)),--host $(HOST)) \
	$(if $(filter command line,$(origin GRPC_PORT)),--grpc-port $(GRPC_PORT)) \
	$(if $(filter command line,$(origin HTTP_PORT)),--http-port $(HTTP_PORT))

CLIENT_NODE := clients/node
PY_SOURCES := service tests scripts bench clients/python

.PHONY: setup system-deps bench bench-quick run test fuzz accuracy check python-lint lint proto proto-check proto-deps buf-lint buf-breaking proto-release node-lint client-test image image-test clean web web-check lock

setup: $(STAMP)

# pip's and setuptools' chatter goes to $(SETUP_LOG); its tail is shown only if the install fails.
$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt
	@mkdir -p build
	@echo "setting up $(VENV) (log: $(SETUP_LOG))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -c constraints.txt -e clients/python -e '.[dev,otel]'; } >$(SETUP_LOG) 2>&1 || \
	 { tail -n 30 $(SETUP_LOG); echo "setup failed: see $(SETUP_LOG)"; exit 1; }
	@touch $@

# constraints.txt from the venv as it is: after changing a dependency in pyproject.toml (or
# `pip install -U` of one), run make test, then this, and commit both.
lock: setup
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } >constraints.txt.new
	mv constraints.txt.new constraints.txt

$(TOOLS_STAMP): tools/package.json
	cd tools && npm install --no-audit --no-fund --silent
	touch $@

proto: setup
	$(BIN)/python scripts/gen_proto.py
	cd $(CLIENT_NODE) && npm ci --no-audit --no-fund --silent && npm run generate

proto-check: setup
	$(BIN)/python scripts/gen_proto.py --check

# The browser libraries of the playground and /docs: pinned npm packages (web/package-lock.json), the
# files the pages use copied into the server package and committed; install scripts never run.
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund --silent
	touch $@

web: setup $(WEB_STAMP)
	$(BIN)/python scripts/build_web.py

web-check: setup $(WEB_STAMP)
	$(BIN)/python scripts/build_web.py --check

# buf resolves google/api/*.proto from a copy of what the installed googleapis-common-protos ships.
proto-deps: setup
	rm -rf build/proto-deps && mkdir -p build/proto-deps/google/api build/proto-deps/google/rpc
	$(BIN)/python -c 'import google.api, google.rpc, pathlib, shutil; \
	  [shutil.copy(p, "build/proto-deps/google/" + m.__name__.split(".")[-1]) \
	   for m in (google.api, google.rpc) for d in m.__path__ for p in pathlib.Path(d).glob("*.proto")]'

buf-lint: proto-deps $(TOOLS_STAMP)
	$(BUF) lint

# The contract never breaks silently: every change is compared with the contract as last released
# (a descriptor image committed in protos/released/), so a break in any commit since then fails, not
# only one in the last commit. `make proto-release` records a new one when the version changes.
RELEASED := protos/released
PACKAGE_VERSION = $(shell $(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
LAST_RELEASED = $(shell ls $(RELEASED)/chainrule-v*.binpb 2>/dev/null | sort -V | tail -n 1)

buf-breaking: proto-deps $(TOOLS_STAMP)
	@test -n "$(LAST_RELEASED)" || { echo "no released contract in $(RELEASED)/: run make proto-release"; exit 1; }
	$(BUF) breaking protos --against $(LAST_RELEASED)

# Run once per release, after the version in pyproject.toml changes; commit the image it writes.
proto-release: proto-deps $(TOOLS_STAMP)
	@image=$(RELEASED)/chainrule-v$(PACKAGE_VERSION).binpb; \
	if [ -e $$image ]; then echo "$$image exists: v$(PACKAGE_VERSION) is released, bump the version first"; exit 1; fi; \
	if [ -n "$(LAST_RELEASED)" ]; then $(BUF) breaking protos --against $(LAST_RELEASED) || exit 1; fi; \
	mkdir -p $(RELEASED) && $(BUF) build protos --exclude-source-info -o $$image && echo "wrote $$image"

# System tools the tests use: a real Prometheus server (and promtool), h2load for the benchmarks,
# headless Chromium and its WebDriver for the browser tests of the pages; podman (with runc) and
# mmdebstrap build and run the container image where no docker daemon is.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v h2load >/dev/null || missing="$$missing nghttp2-client"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v podman >/dev/null || missing="$$missing podman"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

node-lint: setup
	cd $(CLIENT_NODE) && npm ci --no-audit --no-fund --silent && npm run generate:check && npm run typecheck

# Python only, from the venv: formatting, ruff, mypy (service, scripts, bench, tests: a relaxed
# profile for the server's tests), the layers contract and the import-cycle check.
python-lint: setup
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/mypy
	cd clients/python && ../../$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/check_import_cycles.py

# The quick loop: python-lint and the tests; needs neither root nor npm (tests that need a system
# tool such as prometheus skip, saying so; `make test` runs everything).
check: python-lint
	$(BIN)/pytest

lint: python-lint system-deps proto-check web-check buf-lint buf-breaking node-lint
	BIN=$(BIN) ./scripts/lint_deploy.sh

run: setup
	@$(BIN)/chainrule serve $(strip $(RUN_FLAGS))

test: lint system-deps
	$(BIN)/pytest
	$(MAKE) client-test

# The differential fuzzer (tests/fuzz) with fresh seeds for MINUTES minutes; findings in build/fuzz/.
# Then the INTERNAL-error adversary (tests/fuzz/extremes.py) for a fifth of that, on a fresh seed, the
# hunt for plans slow to compile (tests/fuzz/slow_plans.py, a fifth too), and the sweep of sympy's
# rules for functions of numbers (tests/fuzz/rules.py, about 3 minutes).
# `make test` runs a bounded slice of the differential, extremes and rules fuzzers with fixed seeds.
MINUTES ?= 20
fuzz: setup
	$(BIN)/python -m tests.fuzz.run --minutes $(MINUTES) --out build/fuzz; found=$$?; \
	$(BIN)/python -m tests.fuzz.extremes --seconds $$(( $(MINUTES) * 12 )) --seed $$(date +%s) || found=1; \
	$(BIN)/python -m tests.fuzz.slow_plans --minutes $$(( $(MINUTES) / 5 + 1 )) || found=1; \
	$(BIN)/python -m tests.fuzz.rules --out build/fuzz && exit $$found

# Regenerate docs/accuracy.md: each function's error in ulp against mpmath across its real domain.
accuracy: setup
	$(BIN)/python scripts/accuracy.py --write

client-test: setup
	PYTHON=$(PYTHON) CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule bash scripts/client_venv_check.sh
	cd $(CLIENT_NODE) && npm ci --no-audit --no-fund --silent && CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule npm test
	cd $(CLIENT_NODE) && CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule npm run --silent test:pack

# The container image from deploy/Dockerfile, tagged with the package version (scripts/image.sh
# says which engine and base it uses); then run as deploy/k8s/base runs it, and checked.
image: system-deps
	PYTHON=$(PYTHON) ./scripts/image.sh

image-test: image setup
	$(BIN)/pytest tests/image

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml bench/package.json $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]' >>$(SETUP_LOG) 2>&1
	cd bench && npm ci --no-audit --no-fund --silent
	touch $@

bench: setup system-deps $(BENCH_STAMP)
	$(BIN)/python bench/run.py

bench-quick: setup system-deps $(BENCH_STAMP)
	$(BIN)/python bench/run.py --quick --output build/bench-quick

clean:
	rm -rf $(VENV) build tools/node_modules web/node_modules
