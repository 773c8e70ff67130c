# cropcore dashboard with its embedded STAC API (PostgreSQL + PostGIS + stac-fastapi-pgstac).
# Build from the repository root; mount the sample data at /data when running:
#   docker build -t cropcore .
#   docker run --rm -p 8501:8501 -v "$PWD/../shared/data:/data:ro" cropcore
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 CROPCORE_DATA_DIR=/data CROPCORE_HOME=/var/lib/cropcore
RUN apt-get update \
 && apt-get install -y --no-install-recommends make postgresql postgresql-15-postgis-3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# dependency layers first, so code edits rebuild fast
COPY requirements.txt requirements-stac.txt pyproject.toml Makefile README.md ./
COPY scripts ./scripts
COPY cropcore ./cropcore
RUN CROPCORE_SKIP_APT=1 bash scripts/bootstrap.sh
# the dashboard, its pages, the model card and benchmark tables it shows
COPY . .

EXPOSE 8501
CMD ["make", "demo", "PORT=8501", "HOST=0.0.0.0"]
