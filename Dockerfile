# mastok's image: `mastok serve` in PROD mode on port 8190 (README: "Deploying with containers";
# deploy/compose.yml runs it with PostgreSQL, oTree and a proxy). Configure it with MASTOK_*
# variables (MASTOK_PORT, not --port: the HEALTHCHECK reads the same settings).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies alone first, pinned by the lock file (`make lock`): a change to mastok's code
# reuses this layer.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -r /tmp/requirements.lock && rm /tmp/requirements.lock

# mastok itself, installed as a package (not editable; its source is not kept). What it reads
# beside its code, config.yml, templates/ and front/, is in /app (MASTOK_ROOT).
COPY pyproject.toml README.md /tmp/mastok/
COPY mastok /tmp/mastok/mastok
RUN pip install --no-cache-dir --no-deps /tmp/mastok && rm -rf /tmp/mastok
WORKDIR /app
COPY config.yml ./
COPY templates ./templates
COPY front ./front

# A fixed uid and gid (10001): a volume or a host folder can be given to it by number.
RUN groupadd --system --gid 10001 mastok \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home mastok \
    && mkdir -p /app/data && chown 10001:10001 /app/data
ENV MASTOK_ROOT=/app MASTOK_MODE=PROD MASTOK_HOST=0.0.0.0 MASTOK_PORT=8190 \
    MASTOK_SQLITE_PATH=/app/data/mastok.sqlite3
# The embedded SQLite database (when MASTOK_DATABASE_URL is not set) outlives the container.
VOLUME /app/data
USER 10001:10001
EXPOSE 8190
# Follows the settings mastok serves with (MASTOK_PORT, MASTOK_HOST, MASTOK_WEB_PREFIX).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mastok", "healthcheck"]
CMD ["mastok", "serve"]
