# syntax=docker/dockerfile:1
# avmon image: one uvicorn worker per pod (Prometheus metrics stay per process; the HPA
# scales pods). Runs as uid 10001, matching the Helm chart's runAsUser.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: wheels for the project and its dependencies ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Offline builds (no index reachable from the build): wheels fetched beforehand, mounted,
# e.g. --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels. Unset by default.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
WORKDIR /src
RUN python -m venv /opt/avmon
ENV PATH=/opt/avmon/bin:$PATH
# Dependencies first, in their own layer: rebuilt only when pyproject.toml or the pinned
# versions (constraints.txt, those the test suite passed with) change.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p service && touch service/__init__.py \
    && pip install -c constraints.txt '.[k8s]' \
    && pip uninstall -y avmon
# Then the code. The first install's build/ (holding the empty service/__init__.py) goes:
# setuptools would reuse it, its copy looking newer than the checkout's file.
COPY service ./service
RUN rm -rf build ./*.egg-info && pip install --no-deps -c constraints.txt '.[k8s]'

# ---- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="avmon" \
      org.opencontainers.image.description="Real-time monitor for live audio/video streams" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/avmon/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 avmon \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin avmon
COPY --from=build /opt/avmon /opt/avmon
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["uvicorn", "--factory", "service.api.app:create_app_from_env", "--host", "0.0.0.0", "--port", "8080", "--workers", "1", "--timeout-graceful-shutdown", "1", "--no-access-log"]
