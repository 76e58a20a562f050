# syntax=docker/dockerfile:1
# oauth-gateway. Two stages: `build` makes the wheel and a virtualenv holding it and its
# dependencies; the final image is the base plus that virtualenv, with no pip, no compilers and
# no caches. The base is an ARG so it can be swapped (a mirror, a pinned digest, or the test's
# stand-in made from Debian packages: tests/http/test_container.py). Any Debian-like image with
# python3 (>= 3.11), its venv module and `useradd` will do.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# Dependencies come as binary wheels (tornado, cryptography, ...): no compiler is needed. Then
# pip, setuptools and wheel leave the virtualenv, and so do the test suites some packages ship
# (tornado's holds a private key, test.key), as the official python images do for the stdlib.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --only-binary=:all: /wheels/oauth_gateway-*.whl \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel \
 && find /opt/venv/lib -depth -type d \( -name test -o -name tests \) -exec rm -rf {} + \
 && /opt/venv/bin/python -c "import gateway.server, gateway.dev.mode" \
 && /opt/venv/bin/oauth-gateway --help > /dev/null

FROM ${PYTHON_IMAGE}
# The base's own pip (the official python images carry one) is of no use at run time.
# The gateway's user owns /var/lib/oauth-gateway only: keys (mounted, read-only is fine) and
# the default SQLite store (gateway/store/factory.py) live there; /tmp is the other writable path.
RUN (python3 -m pip uninstall --yes pip setuptools wheel > /dev/null 2>&1 || true) \
 && rm -rf /root/.cache /var/cache/apt/archives/*.deb /var/lib/apt/lists/* \
 && groupadd --gid 10001 gateway \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin gateway \
 && mkdir -p /var/lib/oauth-gateway/keys \
 && chown -R 10001:10001 /var/lib/oauth-gateway \
 && chmod 0700 /var/lib/oauth-gateway /var/lib/oauth-gateway/keys
COPY --from=build /opt/venv /opt/venv
# Configuration comes from GATEWAY_<SECTION>__<KEY> variables and/or a mounted TOML file
# (GATEWAY_CONFIG=/etc/oauth-gateway/gateway.toml); secrets from `..._FILE` variables pointing
# at mounted files. Nothing secret is in the image; without keys and a cookie secret it refuses
# to start (it never generates keys outside `serve --dev`).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_LISTEN__ADDRESS=0.0.0.0 \
    GATEWAY_LISTEN__PORT=8080 \
    GATEWAY_TOKENS__KEYS_DIR=/var/lib/oauth-gateway/keys
WORKDIR /var/lib/oauth-gateway
USER 10001:10001
# 8081: the data plane (/verify, /auth), when GATEWAY_DATA_PLANE__ENABLED=true.
EXPOSE 8080 8081
# SIGTERM: stop accepting, drain in-flight requests, close the store, exit 0 (gateway/server.py).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_LISTEN__PORT', '8080'), timeout=2)"]
ENTRYPOINT ["oauth-gateway"]
CMD ["serve"]
