# cropcore dashboard with its embedded STAC API (PostgreSQL + PostGIS + stac-fastapi-pgstac).
# Build from the repository root with the sample data beside it:
#   docker build -t cropcore .
#   docker run --rm -p 8501:8501 -v "$PWD/../shared/data:/data:ro" cropcore
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 CROPCORE_DATA_DIR=/data CROPCORE_HOME=/var/lib/cropcore
RUN apt-get update \
 && apt-get install -y --no-install-recommends make postgresql postgresql-15-postgis-3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-stac.txt pyproject.toml Makefile ./
COPY scripts ./scripts
# the application's own files come after the dependency layers, so code edits rebuild fast
COPY README.md ./
COPY cropcore ./cropcore
RUN CROPCORE_SKIP_APT=1 bash scripts/bootstrap.sh
COPY app.py ./
COPY pages ./pages
COPY .streamlit ./.streamlit

EXPOSE 8501
CMD ["make", "demo", "PORT=8501", "HOST=0.0.0.0"]
