# socialmesh — every target works on a fresh machine: it installs what it needs first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
STAMP := $(VENV)/.install-stamp
EDGE_PORT ?= 8080
export PATH := $(abspath $(VENV))/bin:$(abspath node_modules)/.bin:$(PATH)

.PHONY: install run test lint gen bench clean release-contracts breaking

install: $(STAMP)

$(STAMP): pyproject.toml package.json
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,local]'
	test -x $(VENV)/checkov/bin/checkov || { python3 -m venv $(VENV)/checkov && $(VENV)/checkov/bin/pip install -q checkov==3.3.30; }  # own venv: it pins packaging<24, pytest needs >=24
	npm install --no-audit --no-fund --loglevel=error
	touch $(STAMP)

run: install
	$(VENV)/bin/socialmesh up --edge-port $(EDGE_PORT)

test: install
	$(PY) -m pytest -q

lint: install breaking
	$(BUF) lint
	$(VENV)/bin/ruff check services gateway tests scripts
	$(VENV)/bin/ruff format --check services gateway tests scripts
	$(VENV)/bin/mypy services gateway

# Regenerates gen/: messages, gRPC stubs, .pyi stubs and the descriptor set Envoy loads.
gen: install
	$(PY) scripts/gen_protos.py gen

# Compares image to image: the workspace image and the snapshot hold the same
# vendored/well-known files, so only changes to our contracts can show up.
breaking: install
	@current=$$(mktemp --suffix=.binpb) && $(BUF) build -o $$current && \
	  $(BUF) breaking $$current --against proto/released.binpb; rc=$$?; rm -f $$current; exit $$rc

# Snapshot of the released contracts that `buf breaking` compares against.
# Refresh it only when a release is cut: `make release-contracts`.
release-contracts: install
	$(BUF) build -o proto/released.binpb

bench: install
	$(VENV)/bin/socialmesh bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
