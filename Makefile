# chainrule: the commands the README names. `make run` and `make test` set up a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS_STAMP := tools/node_modules/.installed
BUF := tools/node_modules/.bin/buf
SETUP_LOG := build/setup.log
# `make run HOST=... GRPC_PORT=... HTTP_PORT=...` passes these as flags; without them the server's
# settings apply: CHAINRULE_* from the environment, else 127.0.0.1, 50051 and 8080.
RUN_FLAGS = $(if $(filter command line,$(origin HOST)),--host $(HOST)) \
	$(if $(filter command line,$(origin GRPC_PORT)),--grpc-port $(GRPC_PORT)) \
	$(if $(filter command line,$(origin HTTP_PORT)),--http-port $(HTTP_PORT))

CLIENT_NODE := clients/node

.PHONY: setup system-deps bench bench-quick run test lint proto proto-check proto-deps buf-lint buf-breaking node-lint client-test clean

setup: $(STAMP)

# pip's and setuptools' chatter goes to $(SETUP_LOG); its tail is shown only if the install fails.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	@mkdir -p build
	@echo "setting up $(VENV) (log: $(SETUP_LOG))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -e clients/python -e '.[dev,otel]'; } >$(SETUP_LOG) 2>&1 || \
	 { tail -n 30 $(SETUP_LOG); echo "setup failed: see $(SETUP_LOG)"; exit 1; }
	@touch $@

$(TOOLS_STAMP): tools/package.json
	cd tools && npm install --no-audit --no-fund --silent
	touch $@

proto: setup
	$(BIN)/python scripts/gen_proto.py

proto-check: setup
	$(BIN)/python scripts/gen_proto.py --check

# buf resolves google/api/*.proto from a copy of what the installed googleapis-common-protos ships.
proto-deps: setup
	rm -rf build/proto-deps && mkdir -p build/proto-deps/google/api build/proto-deps/google/rpc
	$(BIN)/python -c 'import google.api, google.rpc, pathlib, shutil; \
	  [shutil.copy(p, "build/proto-deps/google/" + m.__name__.split(".")[-1]) \
	   for m in (google.api, google.rpc) for d in m.__path__ for p in pathlib.Path(d).glob("*.proto")]'

buf-lint: proto-deps $(TOOLS_STAMP)
	$(BUF) lint

# The contract never breaks silently: compare with the previous commit of main where history exists.
buf-breaking: proto-deps $(TOOLS_STAMP)
	@if git rev-parse --verify --quiet HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
	  rm -rf build/buf-against && mkdir -p build/buf-against && \
	  git archive HEAD~1 protos buf.yaml | tar -x -C build/buf-against && \
	  mkdir -p build/buf-against/build && cp -r build/proto-deps build/buf-against/build/ && \
	  $(BUF) breaking --against build/buf-against; \
	else echo "buf breaking: no previous commit with protos, skipped"; fi

# System tools the tests use: a real Prometheus server (and promtool), h2load for the benchmarks.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v h2load >/dev/null || missing="$$missing nghttp2-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

node-lint: setup
	cd $(CLIENT_NODE) && npm ci --no-audit --no-fund --silent && npm run generate:check && npm run typecheck

lint: setup system-deps proto-check buf-lint buf-breaking node-lint
	$(BIN)/ruff check service tests scripts bench clients/python
	$(BIN)/ruff format --check service tests scripts bench clients/python
	$(BIN)/mypy
	cd clients/python && ../../$(BIN)/mypy
	BIN=$(BIN) ./scripts/lint_deploy.sh

run: setup
	@$(BIN)/chainrule serve $(strip $(RUN_FLAGS))

test: lint system-deps
	$(BIN)/pytest
	$(MAKE) client-test

client-test: setup
	PYTHON=$(PYTHON) CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule bash scripts/client_venv_check.sh
	cd $(CLIENT_NODE) && npm ci --no-audit --no-fund --silent && CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule npm test
	cd $(CLIENT_NODE) && CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule npm run --silent test:pack

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml bench/package.json $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]' >>$(SETUP_LOG) 2>&1
	cd bench && npm ci --no-audit --no-fund --silent
	touch $@

bench: setup system-deps $(BENCH_STAMP)
	$(BIN)/python bench/run.py

bench-quick: setup system-deps $(BENCH_STAMP)
	$(BIN)/python bench/run.py --quick --output build/bench-quick

clean:
	rm -rf $(VENV) build tools/node_modules
