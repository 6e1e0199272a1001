# StratX application image: the CLI, the Quix apps, the model services, the dashboard, the bundled races.
# Built from the lock file, like `make install`. (No Docker engine on the dev machines: this file
# is kept valid and its commands are the ones `make install` / `stratx` run there.)
FROM python:3.11-slim-bookworm

# UV_COMPILE_BYTECODE: the dependencies' .pyc are built once into the image, so a cold start
# (scale-to-zero) does not compile thousands of modules (PYTHONDONTWRITEBYTECODE would then
# recompile them at every start: a model service took 5.1 s of CPU to start instead of 3.2)
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH \
    STRATX_DATA_DIR=/app/data \
    STRATX_FEAST_REPO=/app/feature_repo STRATX_FEAST_DATA_DIR=/app/.stratx/feast \
    STRATX_STATE_DIR=/app/.stratx/state \
    BENTOML_HOME=/app/.stratx/bentoml BENTOML_DO_NOT_TRACK=true
WORKDIR /app

RUN pip install --no-cache-dir uv==0.13.8
COPY pyproject.toml uv.lock README.md ./
# extras: scale (Redis Feast online store, PostgreSQL MLflow), serverless (boto3 for DynamoDB idempotency)
RUN uv sync --frozen --no-install-project --no-dev --extra scale --extra serverless
COPY functions ./functions
COPY quix_apps ./quix_apps
COPY panel_app ./panel_app
COPY localstack ./localstack
COPY bentos ./bentos
COPY data ./data
COPY feature_repo ./feature_repo
# editable, as `make install`: the code finds bentos/, data/ and feature_repo/ beside itself (/app)
RUN uv sync --frozen --no-dev --extra scale --extra serverless

RUN useradd --create-home stratx && mkdir -p /app/.stratx && chown stratx /app/.stratx
USER stratx
ENTRYPOINT ["stratx"]
CMD ["--help"]
