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

.PHONY: setup run test lint proto proto-check proto-deps buf-lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e clients/python -e '.[dev]' --config-settings editable_mode=compat
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

lint: setup proto-check buf-lint
	$(BIN)/ruff check service tests scripts bench
	$(BIN)/ruff format --check service tests scripts bench
	$(BIN)/mypy

run: setup
	$(BIN)/chainrule serve --host $(HOST) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT)

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build tools/node_modules
