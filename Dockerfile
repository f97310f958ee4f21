# Heddle's production image: every role runs from it (`heddle serve --role ...`).
# Non-root, without the embedded dev servers' data, configured by the environment
# (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, HEDDLE_*). See deploy/compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HEDDLE_API_HOST=0.0.0.0
RUN useradd --create-home --uid 10001 heddle
WORKDIR /opt/heddle
COPY pyproject.toml README.md ./
COPY domain domain
COPY handlers handlers
COPY projections projections
COPY api api
COPY infra infra
RUN pip install .
COPY examples examples

USER heddle
EXPOSE 8080 9464
ENTRYPOINT ["heddle"]
CMD ["serve", "--role", "worker", "--no-api"]
