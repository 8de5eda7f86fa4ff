# syntax=docker/dockerfile:1
# echobase's container image: the gateway, the order processor, the MCP service, migrations
# and the local AWS emulators from one release wheel (target "app"), and the browser app
# served by an unprivileged nginx (target "frontend").
#
# NOT BUILT HERE: the machine this was written on has no container engine. It is linted
# with hadolint (tests/unit/test_dockerfile.py), which also checks the contract below.
#
# Base images are pinned to full version tags. A team building this should add each one's
# digest (FROM image:tag@sha256:...) from its own registry: digests could not be fetched
# where this file was written, and a tag alone can be re-pointed by its publisher.
#
#   docker build --target app -t echobase:VERSION .
#   docker build --target frontend -t echobase-frontend:VERSION .
#
# Contract (Compose and Kubernetes renderings rely on it): the app image's ENTRYPOINT is
# ["python", "-I", "-m"] and its CMD the gateway, so a container names its module only:
#   echobase.app.gateway | echobase.app.processor | echobase.app.mcp
#   echobase.app.db.migrate upgrade --secret NAME
#   echobase.platform.aws_emulator | echobase.platform.durable.secrets_store
# Settings come from ECHOBASE_* variables at run time; credentials only from Secrets
# Manager at run time. Nothing secret is passed to or kept in any layer.

# --- (a) the release wheel and its locked runtime, in a venv ---------------------------------
FROM python:3.11.11-slim-bookworm AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The build tools first, by hash: pip, setuptools and wheel exactly as the lock says.
COPY requirements/tools.lock requirements/runtime.lock requirements/
RUN python -m venv /opt/tools \
    && /opt/tools/bin/python -m pip install --require-hashes --no-deps -r requirements/tools.lock
# The runtime closure, by hash, before the source: a code change reuses this layer.
RUN python -m venv /opt/echobase \
    && /opt/echobase/bin/python -m pip install --require-hashes --no-deps \
        -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src/ src/
RUN /opt/tools/bin/python -m pip wheel --no-deps --no-build-isolation --no-index -w /dist . \
    && /opt/echobase/bin/python -m pip install --no-deps --no-index /dist/echobase-*.whl \
    && /opt/echobase/bin/python -m pip check

# --- (b) the browser app's bundle ------------------------------------------------------------
FROM node:22.12.0-bookworm-slim AS bundle
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

# --- (c) the services ------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm AS app
# A fixed uid/gid: volumes and Kubernetes' runAsUser can name it without looking it up.
RUN groupadd --system --gid 10001 echobase \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/echobase \
        --create-home --shell /usr/sbin/nologin echobase
COPY --from=wheel /opt/echobase /opt/echobase
ENV PATH=/opt/echobase/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECHOBASE_HOST=0.0.0.0 \
    ECHOBASE_PORT=3102
WORKDIR /var/lib/echobase
USER 10001:10001
EXPOSE 3102
# Standard library only: no curl in the image. Services other than the gateway are given
# their own check by whoever runs them (the AWS emulators answer elsewhere than /health).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-I", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ECHOBASE_PORT', '3102'), timeout=2)"]
ENTRYPOINT ["python", "-I", "-m"]
CMD ["echobase.app.gateway"]

# --- (d) the browser app, served by an unprivileged nginx ------------------------------------
FROM nginxinc/nginx-unprivileged:1.27.3-alpine AS frontend
COPY --from=bundle /frontend/dist/ /usr/share/nginx/html/
# Client-side routes fall back to index.html (the image's default answers them 404).
COPY docker/frontend.conf /etc/nginx/conf.d/default.conf
# nginx-unprivileged's own user (uid 101): listens on 8080, writes only under /tmp.
USER 101
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
