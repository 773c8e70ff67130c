# cropcore dashboard with its embedded STAC API (PostgreSQL + PostGIS + stac-fastapi-pgstac) and the shipped
# models (cropcore/checkpoints). Build from the repository root; mount the sample data read-only at /data:
#   docker build -t cropcore .
#   docker run --rm -p 8501:8501 -v "$PWD/../shared/data:/data:ro" cropcore
# Needs BuildKit (Docker's default builder since 23.0) or podman/buildah, for the pip cache mounts.
# torch, first found of: a wheel of the pinned version in wheels/ (optional, not in git: e.g. the CPU build
# copied there on an offline machine); the CPU build from TORCH_INDEX when that index answers within 5 s; the
# default index (on Linux x86_64 PyPI that is the CUDA build, several GB larger). `--build-arg TORCH_INDEX=`
# skips the probe.

# the torch pin and the checksums of wheels/, so the torch layer is rebuilt only when one of them changes
FROM python:3.11-slim-bookworm AS pins
COPY requirements.txt wheels* /pins/
RUN grep -iE '^torch==' /pins/requirements.txt > /pins/torch.txt \
 && (cd /pins && sha256sum -- *.whl 2>/dev/null || true) > /pins/wheels.sha256

FROM python:3.11-slim-bookworm
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CROPCORE_DATA_DIR=/data CROPCORE_HOME=/var/lib/cropcore CROPCORE_SKIP_APT=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false PORT=8501 HOST=0.0.0.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends make postgresql postgresql-15-postgis-3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY --from=pins /pins/torch.txt /pins/wheels.sha256 /pins/
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=bind,from=pins,source=/pins,target=/wheels \
    python -m venv .venv \
 && .venv/bin/python -m pip install -q --upgrade pip \
 && if .venv/bin/python -m pip download -q --no-deps --no-index --find-links /wheels -d /tmp/whl \
        -r /pins/torch.txt 2>/dev/null; then \
      echo "torch: $(ls /tmp/whl) from wheels/"; \
      .venv/bin/python -m pip install -q -r /pins/torch.txt --find-links /wheels; \
      rm -rf /tmp/whl; \
    elif [ -n "$TORCH_INDEX" ] && timeout 10 python -c "import sys, urllib.request; \
        urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=5)" "$TORCH_INDEX" 2>/dev/null; then \
      echo "torch: the CPU build from $TORCH_INDEX"; \
      .venv/bin/python -m pip install -q -r /pins/torch.txt --index-url "$TORCH_INDEX"; \
    else \
      echo "torch: ${TORCH_INDEX:-no CPU index} not reachable, torch from the default index"; \
      .venv/bin/python -m pip install -q -r /pins/torch.txt; \
    fi \
 && .venv/bin/python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# the STAC API server's environment, then the application's (torch is already there)
COPY requirements-stac.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv .venv-stac \
 && .venv-stac/bin/python -m pip install -q --upgrade pip \
 && .venv-stac/bin/python -m pip install -q -r requirements-stac.txt
COPY requirements.txt ./
RUN --mount=type=cache,target=/root/.cache/pip .venv/bin/python -m pip install -q -r requirements.txt

# the code, the shipped checkpoints, the dashboard's pages, model card and benchmark tables; bootstrap.sh
# only records that the environments are current and installs the package itself. Named one by one, so
# neither wheels/ nor anything else left in the build context lands in the image.
COPY Makefile pyproject.toml README.md app.py ./
COPY .streamlit .streamlit/
COPY scripts scripts/
COPY configs configs/
COPY docs docs/
COPY benchmarks benchmarks/
COPY pages pages/
COPY cropcore cropcore/
RUN PIP_NO_CACHE_DIR=1 bash scripts/bootstrap.sh \
 && ls cropcore/checkpoints/*.pt

EXPOSE 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 CMD python -c "import sys, urllib.request; \
    urllib.request.urlopen('http://127.0.0.1:' + sys.argv[1] + '/_stcore/health', timeout=4)" "${PORT:-8501}"
# `make demo`: starts the embedded catalog (built from /data on first start) and the dashboard on $HOST:$PORT
CMD ["make", "demo"]
