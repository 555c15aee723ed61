# Our environment (Prefect 3.8, label-studio-sdk, prefect-dask, the library and its flows), as
# `.venv/` holds it: the image of the Prefect worker, the model-init step and the optional Dask
# scheduler and workers. Build from the repository root: docker build -f deploy/Dockerfile.app .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY constraints/ constraints/
COPY pyproject.toml README.md LICENSE ./
COPY smo_labelstudio/ smo_labelstudio/
COPY flows/ flows/
# Editable, so the repository layout (taxonomy, label configs, specs beside the package) is kept.
RUN pip install -c constraints/app.txt -e .

COPY taxonomy.yaml prefect.yaml ./
COPY label_configs/ label_configs/
COPY guidelines/ guidelines/
COPY specs/ specs/

RUN useradd --system --uid 10001 --home-dir /app smo && mkdir -p /data/smo && chown -R smo /data/smo
USER smo
# SMO_HOME holds the workspaces and model store (a volume); SMO_APP_DIR is where prefect.yaml's pull
# step finds the flows.
ENV SMO_HOME=/data/smo \
    SMO_APP_DIR=/app \
    PREFECT_HOME=/data/smo/prefect
CMD ["prefect", "worker", "start", "--pool", "smo-pool", "--type", "process", "--with-healthcheck"]
