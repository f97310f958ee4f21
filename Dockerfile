# Heddle's production image: every role runs from it (`heddle serve --role ...`).
# Non-root, the locked versions (uv.lock) without the embedded dev servers, configured
# by the environment (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, HEDDLE_*). See
# deploy/compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HEDDLE_API_HOST=0.0.0.0 \
    UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1 \
    PATH=/opt/venv/bin:$PATH
RUN pip install uv==0.13.9 && useradd --create-home --uid 10001 heddle
WORKDIR /opt/heddle
COPY pyproject.toml uv.lock README.md ./
COPY domain domain
COPY handlers handlers
COPY projections projections
COPY api api
COPY infra infra
COPY examples examples
# The locked versions (uv.lock), the package itself not editable, tracing included; not
# the `embedded` extra (heddle up's dev servers) nor the `dev` one.
RUN uv sync --locked --no-editable --extra otel

USER heddle
EXPOSE 8080 9464
ENTRYPOINT ["heddle"]
CMD ["serve", "--role", "worker", "--no-api"]
