#!/usr/bin/env bash
# `make image-test`: README's "Deploying with containers", step by step as a lab admin runs it
# (an .env from env.example, build, up), then scripted people through the public entry
# (deploy/stack_check.py); the stack and its volumes are removed at the end (KEEP=1 keeps them).
#
# Part one: a participant goes through the proxy into an oTree session. Part two: the leader's
# process is killed and the standby takes over; a waiting participant resumes its place there.
# Part three: the same with the leader cut off from the network rather than killed. Part four:
# PostgreSQL killed and restarted. Part five: one address's flood of connections.
#
# On a machine without a container registry, source deploy/sandbox-prelude.sh first.
set -euo pipefail
cd "$(dirname "$0")"
PROJECT="${IMAGE_TEST_PROJECT:-mastok-image-test}"
PYTHON="${PYTHON:-../.venv/bin/python}"
COMPOSE=(podman-compose -p "$PROJECT" -f compose.yml)
began=$(date +%s)
step() { echo "=== [$(( $(date +%s) - began )) s] $*"; }

secret() { "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
if [ ! -f .env ]; then
    step "deploy/.env from env.example, with fresh secrets (README step 2)"
    port="${IMAGE_TEST_PORT:-18080}" otree_port="${IMAGE_TEST_OTREE_PORT:-18000}"
    sed -e "s|^MASTOK_ORIGIN=.*|MASTOK_ORIGIN=http://localhost:$port|" \
        -e "s|^OTREE_PUBLIC_URL=.*|OTREE_PUBLIC_URL=http://localhost:$otree_port|" \
        -e "s|^MASTOK_PUBLIC_PORT=.*|MASTOK_PUBLIC_PORT=$port|" \
        -e "s|^OTREE_PUBLIC_PORT=.*|OTREE_PUBLIC_PORT=$otree_port|" \
        -e "s|^MASTOK_PASSWORD=$|MASTOK_PASSWORD=$(secret)|" \
        -e "s|^MASTOK_SECRET_KEY=$|MASTOK_SECRET_KEY=$(secret)|" \
        -e "s|^POSTGRES_PASSWORD=$|POSTGRES_PASSWORD=$(secret)|" \
        -e "s|^OTREE_REST_KEY=$|OTREE_REST_KEY=$(secret)|" \
        -e "s|^OTREE_ADMIN_PASSWORD=$|OTREE_ADMIN_PASSWORD=$(secret)|" \
        env.example >.env
fi

teardown() {
    if [ "${KEEP:-0}" = 1 ]; then
        step "kept running (KEEP=1): ${COMPOSE[*]} down -v removes it"
        return
    fi
    step "removing the stack and its volumes"
    # Containers first with their anonymous volumes (the image's /app/data), then the rest.
    podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f -v >/dev/null
    "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}
trap teardown EXIT

step "build (README step 3)"
"${COMPOSE[@]}" build >build.log 2>&1 || { tail -30 build.log; exit 1; }
step "up (README step 4)"
"${COMPOSE[@]}" up -d >up.log 2>&1 || { grep -v '^podman run' up.log | tail -30; exit 1; }

step "part one: a scripted participant through the proxy into an oTree session"
"$PYTHON" stack_check.py participant

step "the client address mastok logged is the participant's, not the proxy's"
proxy_ip=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${PROJECT}_proxy_1")
# Either instance may lead (both start together): the proxy sent the request to the leader.
logged=$(for c in mastok1 mastok2; do podman logs "${PROJECT}_${c}_1" 2>&1; done |
    grep -E 'uvicorn.access: .*POST /api/campaigns' | tail -1)
echo "proxy at $proxy_ip; the leader logged: $logged"
case "$logged" in
    "" | *"uvicorn.access: $proxy_ip:"*)
        echo "FAILED: mastok did not log the client's forwarded address" >&2
        exit 1
        ;;
esac

step "part two: kill -9 the leader; the standby leads; resume; pause"
"$PYTHON" stack_check.py failover "${PROJECT}_mastok1_1" "${PROJECT}_mastok2_1"
step "part three: the leader cut off from the network; another leads; resume; it stands by"
"$PYTHON" stack_check.py partition "${PROJECT}_mastok1_1" "${PROJECT}_mastok2_1"
step "part four: PostgreSQL killed and restarted; the participant back in its place"
"$PYTHON" stack_check.py database-restart "${PROJECT}_mastok1_1" "${PROJECT}_mastok2_1" "${PROJECT}_db_1"
step "part five: one address's flood of connections is cut off by the proxy"
"$PYTHON" stack_check.py flood
step "image test passed"
