# vastai-exporter container image.
#
#   docker build -t vastai-exporter .
#   docker run -p 9840:9840 vastai-exporter --demo
#   docker run -p 9840:9840 -e VAST_API_KEY=... \
#       -v "$PWD/config.yaml:/etc/vastai-exporter/config.yaml:ro" vastai-exporter
#
# The key comes from VAST_API_KEY or from the file named by vast.api_key_file in the config
# (for instance a secret mounted at /run/secrets/vast_api_key); it is never baked into the image.

# ---- build: install the package and its dependencies into a virtualenv
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/vastai-exporter --version

# ---- runtime: the virtualenv on a clean slim image, run as an unprivileged user
FROM python:3.12-slim AS runtime
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

# python itself probes /-/healthy: the slim image has no curl or wget.
# It assumes the default --web.listen-address (:9840), and plain HTTP without basic auth: with a
# --web.config.file that turns on TLS or basic auth, override or disable this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9840/-/healthy', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["vastai-exporter"]
CMD ["--config.file=/etc/vastai-exporter/config.yaml"]
