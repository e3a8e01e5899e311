# socialmesh — every target works on a fresh machine: it installs what it needs first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
STAMP := $(VENV)/.install-stamp
EDGE_PORT ?= 8080
export PATH := $(abspath $(VENV))/bin:$(abspath node_modules)/.bin:$(PATH)

.PHONY: install run test test-fast lint fmt hooks gen bench clean release-contracts breaking web-app web-lint web-gen

install: $(STAMP) web-app

$(STAMP): pyproject.toml package.json
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,local]'
	test -x $(VENV)/checkov/bin/checkov || { python3 -m venv $(VENV)/checkov && $(VENV)/checkov/bin/pip install -q checkov==3.3.30; }  # own venv: it pins packaging<24, pytest needs >=24
	npm install --no-audit --no-fund --loglevel=error
	touch $(STAMP)

# The web app (web/, Next.js static export) when the checkout has it: `npm ci` again only
# when its lockfile changes, `npm run build` + scripts/precompress_web.py (Swagger UI at
# /docs, .br/.gz siblings) only when a source changes, and Debian's chromium for its
# Playwright journeys (tests/test_web.py) when /usr/bin/chromium is missing.
WEB_DEPS := web/node_modules/.socialmesh-stamp
WEB_BUILD := web/out/.socialmesh-build-stamp
CHROMIUM := /usr/bin/chromium
ifneq ($(wildcard web/package.json),)
# What the build reads: web/'s files git does not ignore (so not node_modules/, out/,
# .next/), tests left out.
WEB_SOURCES := $(filter-out web/e2e/% web/tests/%,$(wildcard $(shell \
  git ls-files --cached --others --exclude-standard web 2>/dev/null)))

web-app: $(WEB_BUILD) $(CHROMIUM)

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_BUILD): $(STAMP) $(WEB_DEPS) $(WEB_SOURCES) scripts/precompress_web.py
	cd web && npm run build
	$(PY) scripts/precompress_web.py web/out --swagger-ui node_modules/swagger-ui-dist
	touch $@

$(CHROMIUM):
	@echo "installing Debian's chromium (the web app's Playwright journeys drive it)"
	$$(test "$$(id -u)" = 0 || echo sudo -n) env DEBIAN_FRONTEND=noninteractive sh -c \
	  'apt-get -o DPkg::Lock::Timeout=600 update -q && apt-get -o DPkg::Lock::Timeout=600 \
	  install -y -q --no-install-recommends chromium'
	test -x $@

web-lint: install
	cd web && npm run lint && npm run typecheck && npm run gen:check

web-gen: install
	cd web && npm run gen
else
web-app web-lint web-gen:
	@echo "no web/package.json: no web app to $@"
endif

run: install
	$(VENV)/bin/socialmesh up --edge-port $(EDGE_PORT)

test: install
	$(PY) -m pytest -q

# The inner loop: everything but the end-to-end stack (real Envoy, `socialmesh up`), the
# browser journeys, Kubernetes image/manifest checks and the load tests. `make test` runs all.
FAST_IGNORE := $(addprefix --ignore=tests/,test_bench.py test_bench_chat.py test_bench_fanout.py \
  test_k8s.py test_k8s_manifests.py)
test-fast: install
	$(PY) -m pytest -q -m "not e2e" $(FAST_IGNORE)

# Formats what `make lint` checks: Python (ruff format + the fixable ruff rules) and the web app.
fmt: install
	$(VENV)/bin/ruff format services gateway tests scripts
	$(VENV)/bin/ruff check --fix services gateway tests scripts
	cd web && npx eslint --fix .

# Git pre-commit hooks (.pre-commit-config.yaml: the project's own pinned tools, offline).
hooks: install
	$(PY) -m pip install -q pre-commit==4.7.0
	$(VENV)/bin/pre-commit install

lint: install breaking web-lint
	$(BUF) lint
	$(VENV)/bin/ruff check services gateway tests scripts
	$(VENV)/bin/ruff format --check services gateway tests scripts
	$(VENV)/bin/mypy services gateway

# Regenerates gen/: messages, gRPC stubs, .pyi stubs and the descriptor set Envoy loads.
gen: install
	$(PY) scripts/gen_protos.py gen
	$(MAKE) web-gen

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
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache web/node_modules web/out
