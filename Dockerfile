# syntax=docker/dockerfile:1
# Soulfra's image: one image for every process of the services topology (`serve meta`, `serve api`, the four
# `serve <platform>` processes, the one-shot `db upgrade`) and for `up`. Built by `make image`; linted by hadolint in
# the tests (tests/integration/test_deploy_image.py). Only the virtual environment reaches the final stage: no
# compiler, no pip, no build backend.

FROM python:3.11.14-slim-trixie AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/soulfra
# The wheel is built from the sources alone (the build backend lives in pip's isolated build environment, never in
# the venv); psycopg comes with it through the `postgres` extra, for the services topology's PostgreSQL.
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN /opt/soulfra/bin/pip install --no-cache-dir ".[postgres]" \
    && /opt/soulfra/bin/pip uninstall --yes pip \
    && /opt/soulfra/bin/soulfra --help > /dev/null


FROM python:3.11.14-slim-trixie

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="soulfra" \
      org.opencontainers.image.description="Deterministic autonomous multi-agent worlds, with god-mode control from above." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-trixie"

# A fixed UID and GID (10001), so that Kubernetes' runAsUser/fsGroup and volume ownership can name them.
RUN groupadd --system --gid 10001 soulfra \
    && useradd --system --uid 10001 --gid soulfra --no-create-home --home-dir /var/lib/soulfra \
        --shell /usr/sbin/nologin soulfra \
    && install --directory --owner soulfra --group soulfra --mode 0700 \
        /var/lib/soulfra /var/lib/soulfra/home /var/lib/soulfra/data

COPY --from=builder /opt/soulfra /opt/soulfra

# SOULFRA_HOME holds the installation key (keys/installation.pem) and trusted_keys/; SOULFRA_DATA is `up`'s SQLite
# directory. In a container the loopback address reaches nobody, so the API and the metrics listen on every
# interface; plain HTTP there still needs SOULFRA_INSECURE_HTTP=true (or --tls-cert/--tls-key), said on purpose.
ENV PATH=/opt/soulfra/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOULFRA_HOME=/var/lib/soulfra/home \
    SOULFRA_DATA=/var/lib/soulfra/data \
    SOULFRA_HOST=0.0.0.0 \
    SOULFRA_METRICS_HOST=0.0.0.0 \
    SOULFRA_LOG_FORMAT=json

WORKDIR /var/lib/soulfra
USER 10001:10001
# 8000: the HTTP API (and its /metrics, /healthz, /readyz); 9464: the metrics port of meta and the platforms.
EXPOSE 8000 9464

# /healthz on the process's own port: the metrics port when one is set (meta, the platforms), else the API's.
# Python's standard library only (no curl in the image); HTTPS when the API serves TLS itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; e = os.environ.get; m = e('SOULFRA_METRICS_PORT'); tls = not m and bool(e('SOULFRA_TLS_CERT')); url = ('https' if tls else 'http') + '://127.0.0.1:' + (m or e('SOULFRA_PORT') or '8000') + '/healthz'; r.urlopen(url, timeout=4, context=ssl._create_unverified_context() if tls else None)"]

ENTRYPOINT ["soulfra"]
# The stateless API gateway; override the command for the others (`serve meta`, `serve runtime --instance ID`,
# `db upgrade`, `up --insecure-http`).
CMD ["serve", "api"]
