# vastai-exporter container image.
#
#   docker build -t vastai-exporter .
#   docker run -p 9840:9840 vastai-exporter --demo
#   docker run -p 9840:9840 -e VAST_API_KEY=... \
#       -v "$PWD/config.yaml:/etc/vastai-exporter/config.yaml:ro" vastai-exporter
#
# Without access to an image registry, build a stand-in base from Debian packages first
# (deploy/build-base-image.sh) and pass it as the base:
#
#   docker build --network host --build-arg BASE_IMAGE=vastai-exporter-base:debian -t vastai-exporter .
#
# Any base with python3 (3.11 or later) and its venv module works: only `python3` and the
# virtualenv's own python are called, never `python`.
#
# The key comes from VAST_API_KEY or from the file named by vast.api_key_file in the config
# (for instance a secret mounted at /run/secrets/vast_api_key); it is never baked into the image.

ARG BASE_IMAGE=python:3.12-slim

# ---- build: install the locked dependencies, then the package, into a virtualenv
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# The runtime dependencies exactly as requirements.lock pins them (made by pip-compile, see
# CONTRIBUTING.md): every file checked against its hash, wheels only. Its own layer: rebuilt only
# when the lock changes.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --only-binary :all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# The package alone (--no-deps: nothing beyond the lock); pip check fails the build if the lock
# does not satisfy pyproject.toml. pip itself is not needed at run time: removed at the end.
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/vastai-exporter --version \
    && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

# ---- runtime: the virtualenv on a clean base image, run as an unprivileged user
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 vastai \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin vastai \
    && mkdir -p /etc/vastai-exporter
COPY --from=build /opt/venv /opt/venv

# numeric so that Kubernetes' runAsNonRoot can verify it
USER 10001:10001
EXPOSE 9840

# The virtualenv's python probes /-/healthy (no curl or wget in the image). exporter.healthcheck
# reads the listen address from the exporter's command line, so a --web.listen-address other than
# the default :9840 is probed where it is; VASTAI_EXPORTER_HEALTHCHECK_URL overrides the URL.
# Plain HTTP without credentials: with a --web.config.file that turns on TLS or basic auth,
# override or disable this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "-m", "exporter.healthcheck"]

ENTRYPOINT ["vastai-exporter"]
CMD ["--config.file=/etc/vastai-exporter/config.yaml"]
