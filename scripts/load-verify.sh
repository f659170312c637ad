#!/usr/bin/env bash
# Load run of the forward-auth endpoint, GET /api/v1/auth/verify, the one call a reverse
# proxy makes on every request it lets through.
#
#   scripts/load-verify.sh            # defaults: 2 threads, 32 connections, 10 s per run
#   THREADS=4 CONNECTIONS=64 DURATION=30s scripts/load-verify.sh
#
# Builds the release server, starts it on a free loopback port with a throwaway database,
# registers a tenant, lifts its request limit (platform admin via the CLI, then the admin
# API), creates an API key, and runs wrk twice: with the owner's bearer JWT and with the
# API key. Each request carries X-Forwarded-Method/-Uri as a proxy would, so the scope check
# runs too. Prints req/s and p50/p99 per run; stops the server on every exit path.
# Needs: cargo, curl, jq, wrk (Debian: apt-get install -y wrk jq curl). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10s}"
PASSWORD="correct horse battery staple"

for tool in cargo curl jq wrk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "load-verify: $tool is required (Debian: apt-get install -y $tool)" >&2
        exit 1
    fi
done

echo "== building the release server"
cargo build --release --quiet -p tollgate-server
target_dir="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
server="$target_dir/release/tollgate-server"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export TOLLGATE_DATABASE_URL="$work/tollgate.db"
export TOLLGATE_JWT_SECRET="load-secret-load-secret-load-secret-0123"
export TOLLGATE_LOG="warn,tollgate_server=info"
export TOLLGATE_CRON_INTERVAL=3600

echo "== starting the server on a free loopback port"
# Port 0: the kernel picks a free port and the server logs the address it bound.
"$server" --address 127.0.0.1:0 serve 2>"$work/server.log" &
server_pid=$!
address=""
for _ in $(seq 1 300); do
    address="$(sed -n 's/.*Tollgate is listening address=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -n1)"
    [ -n "$address" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "load-verify: the server exited during startup:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$address" ]; then
    echo "load-verify: the server did not report its address within 30 s:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
base="http://$address/api/v1"
echo "   listening on $address"

# POSTs/PUTs JSON and fails loudly on an unexpected status; prints the body.
call() {
    local method="$1" path="$2" expected="$3" body="$4"
    shift 4
    local status
    status="$(curl -sS -o "$work/body" -w '%{http_code}' -X "$method" "$base/$path" \
        -H 'Content-Type: application/json' "$@" --data "$body")"
    if [ "$status" != "$expected" ]; then
        echo "load-verify: $method /api/v1/$path answered $status, expected $expected:" >&2
        cat "$work/body" >&2
        echo >&2
        exit 1
    fi
    cat "$work/body"
}

echo "== arranging a tenant, its plan and an API key"
registered="$(call POST auth/register 201 "$(jq -n --arg p "$PASSWORD" \
    '{tenant_name:"Load Inc.",tenant_slug:"load",email:"owner@load.test",password:$p,name:"Owner"}')")"
tenant_id="$(jq -r .tenant.id <<<"$registered")"
jwt="$(jq -r .access_token <<<"$registered")"

"$server" admin create-platform-admin --email ops@load.test --password "$PASSWORD" >/dev/null
admin_jwt="$(call POST admin/login 200 "$(jq -n --arg p "$PASSWORD" \
    '{email:"ops@load.test",password:$p}')" | jq -r .access_token)"
call PUT "admin/tenants/$tenant_id/plan" 204 \
    '{"plan":"ENTERPRISE","overrides":{"requests_per_minute":100000000}}' \
    -H "Authorization: Bearer $admin_jwt" >/dev/null

api_key="$(call POST api-keys 201 '{"name":"load","scopes":["*"]}' \
    -H "Authorization: Bearer $jwt" | jq -r .key)"

# A sanity check of both credentials before loading them.
for header in "Authorization: Bearer $jwt" "X-API-Key: $api_key"; do
    status="$(curl -sS -o /dev/null -w '%{http_code}' "$base/auth/verify" -H "$header" \
        -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: /comfy/history')"
    if [ "$status" != 200 ]; then
        echo "load-verify: the verify sanity check answered $status" >&2
        exit 1
    fi
done

summary=()
load() {
    local label="$1" header="$2"
    echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency: $label"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -H "$header" -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: /comfy/history' \
        "$base/auth/verify" | tee "$work/wrk.out"
    local rps p50 p99 errors
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")"
    p50="$(awk '$1 == "50%" {print $2}' "$work/wrk.out")"
    p99="$(awk '$1 == "99%" {print $2}' "$work/wrk.out")"
    errors="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$work/wrk.out")"
    if [ -n "$errors" ]; then
        echo "load-verify: $errors responses of the $label run were not 200" >&2
        exit 1
    fi
    local socket_errors
    socket_errors="$(sed -n 's/^ *Socket errors: *//p' "$work/wrk.out")"
    summary+=("$(printf '%-8s %12s req/s   p50 %-9s p99 %-9s %s' "$label" "$rps" "$p50" "$p99" \
        "${socket_errors:+socket errors: $socket_errors}")")
}
load "JWT" "Authorization: Bearer $jwt"
load "API key" "X-API-Key: $api_key"

echo
echo "== GET /api/v1/auth/verify, release build, $(nproc) cores, -t$THREADS -c$CONNECTIONS -d$DURATION"
printf '%s\n' "${summary[@]}"
