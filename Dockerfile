# mastok in production: set MASTOK_PASSWORD, MASTOK_DATABASE_URL and the MASTOK_OTREE_* variables.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md config.yml alembic.ini ./
COPY mastok ./mastok
COPY templates ./templates
COPY front ./front
RUN pip install --no-cache-dir -e . && useradd --system --home /app mastok && mkdir -p data && chown mastok data
USER mastok
ENV MASTOK_MODE=PROD MASTOK_HOST=0.0.0.0 MASTOK_PORT=8190
EXPOSE 8190
HEALTHCHECK CMD python -c "import urllib.request,os;urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"MASTOK_PORT\"]}{os.environ.get(\"MASTOK_WEB_PREFIX\",\"\")}/healthz')"
CMD ["mastok", "serve"]
