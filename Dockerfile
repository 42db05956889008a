# Truce gateway image.
#
# GPU (default): a CUDA runtime base; PyPI's torch 2.13.0 wheel is the CUDA build and
# onnxruntime is swapped for onnxruntime-gpu. Run with `docker run --gpus all ...` and set
# `--device cuda` (or cuda:N) when registering models.
#   docker build -t truce:gpu .
# CPU only:
#   docker build -t truce:cpu --build-arg BASE_IMAGE=python:3.11-slim-bookworm --build-arg VARIANT=cpu .
#
# The install step is `make venv`, exactly what `make test` and CI run. (No Docker engine or
# base image is available where Truce is developed, so this file is not built by CI.)
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${BASE_IMAGE}

ARG VARIANT=gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TRUCE_STORE=/models

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev make git gcc g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/truce
COPY . .
RUN make venv \
 && if [ "$VARIANT" = "gpu" ]; then \
      .venv/bin/pip uninstall -y onnxruntime && .venv/bin/pip install onnxruntime-gpu==1.32.0; \
    fi \
 && useradd --system --create-home --uid 10001 truce \
 && mkdir -p /models && chown truce /models

USER truce
ENV PATH=/opt/truce/.venv/bin:$PATH
VOLUME ["/models"]
EXPOSE 8080 8081
# The admin listener (8082) stays on the container's loopback by default: publish it only
# behind a trusted proxy, with TRUCE_ADMIN_TOKEN set.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python3.11 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2).status != 200)"
CMD ["truce", "serve", "--host", "0.0.0.0"]
