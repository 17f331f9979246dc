# chainrule: the commands the README names. `make run` and `make test` set up a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS_STAMP := tools/node_modules/.installed
BUF := tools/node_modules/.bin/buf
HOST ?= 127.0.0.1
GRPC_PORT ?= 50051
HTTP_PORT ?= 8080

CLIENT_NODE := clients/node

.PHONY: setup system-deps bench bench-quick run test lint proto proto-check proto-deps buf-lint buf-breaking node-lint client-test image image-test clean

setup: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e clients/python -e '.[dev]'
	touch $@

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

# System tools the tests use: a real Prometheus server (and promtool), h2load for the benchmarks;
# podman (with runc) and mmdebstrap build and run the container image where no docker daemon is.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v h2load >/dev/null || missing="$$missing nghttp2-client"; \
	command -v podman >/dev/null || missing="$$missing podman"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
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
	$(BIN)/chainrule serve --host $(HOST) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT)

test: lint system-deps
	$(BIN)/pytest
	$(MAKE) client-test

client-test: setup
	PYTHON=$(PYTHON) CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule bash scripts/client_venv_check.sh
	cd $(CLIENT_NODE) && npm ci --no-audit --no-fund --silent && CHAINRULE_SERVER=$(CURDIR)/$(BIN)/chainrule npm test

# The container image from deploy/Dockerfile, tagged with the package version (scripts/image.sh
# says which engine and base it uses); then run as deploy/k8s/base runs it, and checked.
image: system-deps
	PYTHON=$(PYTHON) ./scripts/image.sh

image-test: image setup
	$(BIN)/pytest tests/image

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml bench/package.json $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	cd bench && npm ci --no-audit --no-fund --silent
	touch $@

bench: setup system-deps $(BENCH_STAMP)
	$(BIN)/python bench/run.py

bench-quick: setup system-deps $(BENCH_STAMP)
	$(BIN)/python bench/run.py --quick --output build/bench-quick

clean:
	rm -rf $(VENV) build tools/node_modules
