#!/usr/bin/env bash
# Property-based tests of the native server against its own OpenAPI document (schemathesis):
# generated requests, valid and not, to every documented operation, in three passes — a
# tenant owner's API key on the tenant's routes, a runner token on the runner's, a platform
# admin's token on the operator's. Every answer must be no server error (5xx other than a
# documented 503), carry a documented status and content type, and match its schema.
#
# The server listens on 127.0.0.1 on a free port, on a fresh database, and is stopped at the
# end. Where the machine allows it (root, or unprivileged user namespaces), server and
# schemathesis run in a network namespace of their own with only loopback, so generated
# webhook URLs cannot reach anything; elsewhere the two operations that send webhooks at once
# are left out, and cron (which sends the rest) does not run during the test.
#
# Needs TOLLGATE_SCHEMATHESIS (scripts/tools/schemathesis.sh), cargo, python3. Settings:
# FUZZ_MAX_EXAMPLES (25 cases per operation and phase), FUZZ_SEED (1).
#
# Prints, last, one line: `fuzz result: N passed; M failed` (operations), and exits non-zero
# when any operation failed.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${TOLLGATE_SCHEMATHESIS:?source scripts/tools/schemathesis.sh first}"
max_examples="${FUZZ_MAX_EXAMPLES:-25}"
seed="${FUZZ_SEED:-1}"

if [ "${1:-}" != "--inside" ]; then
    cargo build --locked -p tollgate-server >&2
    if unshare --net true 2>/dev/null; then
        exec unshare --net bash "$0" --inside isolated
    elif unshare --net --map-root-user true 2>/dev/null; then
        exec unshare --net --map-root-user bash "$0" --inside isolated
    fi
    echo "fuzz-api: no network namespace here; the operations that send webhooks are skipped" >&2
    exec bash "$0" --inside shared
fi
network="$2"
if [ "$network" = isolated ]; then
    ip link set lo up
fi

work="$(mktemp -d)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_server EXIT

server="target/debug/tollgate-server"
password="fuzz horse battery staple"
export TOLLGATE_JWT_SECRET="fuzz-secret-fuzz-secret-fuzz-secret-0123"
export TOLLGATE_ACCESS_TOKEN_TTL=7200
# Register and login are fuzzed too: their per-address attempt limit would soon answer
# nothing but 429.
export TOLLGATE_AUTH_ATTEMPTS_PER_IP=1000000
export TOLLGATE_AUTH_ATTEMPTS_PER_ACCOUNT=1000000
export TOLLGATE_LOG=warn
database="$work/fuzz.db"

"$server" --database "$database" admin create-platform-admin \
    --email ops@fuzz.test --password "$password" >&2
"$server" --database "$database" admin create-tenant --slug fuzz --name "Fuzz Inc." \
    --plan ENTERPRISE --owner-email owner@fuzz.test --owner-password "$password" >&2

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port/api/v1"
# Cron sends webhook deliveries and mail: not while generated URLs are stored.
"$server" --database "$database" --address "127.0.0.1:$port" --threads 2 \
    --cron-interval 86400 >"$work/server.log" 2>&1 &
server_pid=$!

# The credentials of the three passes, made through the API once the server answers.
credentials="$(python3 - "$base" "$password" "$server_pid" <<'PY'
import json, sys, time, urllib.error, urllib.request

base, password, server_pid = sys.argv[1], sys.argv[2], sys.argv[3]

def server_exited():
    try:
        with open(f"/proc/{server_pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True

def call(method, path, body=None, token=None, expected=(200, 201, 204)):
    request = urllib.request.Request(base + path, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, data, timeout=10) as response:
        assert response.status in expected, (method, path, response.status)
        text = response.read()
        return json.loads(text) if text else None

deadline = time.monotonic() + 60
while True:
    try:
        call("GET", "/health")
        break
    except (urllib.error.URLError, ConnectionError):
        if server_exited():
            sys.exit("fuzz-api: the server exited")
        if time.monotonic() > deadline:
            sys.exit("fuzz-api: the server did not answer within 60 s")
        time.sleep(0.2)

admin = call("POST", "/admin/login", {"email": "ops@fuzz.test", "password": password})["access_token"]
owner = call("POST", "/auth/login", {"tenant": "fuzz", "email": "owner@fuzz.test", "password": password})
tenant = owner["tenant_id"]
call("PUT", f"/admin/tenants/{tenant}/plan",
     {"plan": "ENTERPRISE", "overrides": {"requests_per_minute": 1000000000}}, admin)
call("POST", f"/admin/tenants/{tenant}/credits/grants", {"amount": 1000000, "reason": "fuzz"}, admin)
key = call("POST", "/api-keys", {"name": "fuzz", "scopes": ["*"]}, owner["access_token"])["key"]
workers = call("GET", "/workers", token=key)["data"]
default = next(worker["id"] for worker in workers if worker["default"])
runner = call("POST", f"/workers/{default}/runner-tokens", {"name": "fuzz"}, key)["token"]
print(f"owner_key={key}\nadmin_token={admin}\nrunner_token={runner}")
PY
)" || {
    echo "fuzz-api: no credentials to fuzz with; the server said:" >&2
    tail -n 40 "$work/server.log" >&2
    echo "fuzz result: 0 passed; 1 failed"
    exit 1
}
eval "$credentials"

# Deleting the tenant would leave every later request of the pass nothing to act on.
tenant_excluded=(--exclude-operation-id delete_tenant)
if [ "$network" != isolated ]; then
    tenant_excluded+=(--exclude-operation-id post_webhooks_endpoints_id_test
        --exclude-operation-id post_webhooks_deliveries_id_redeliver)
fi

passed=0
failed=0
fuzz() {
    local name="$1" token="$2"
    shift 2
    echo "== fuzz: $name" >&2
    local report="$work/$name.xml"
    local status=0
    # One worker: schemathesis's threads share hypothesis's parsing of lambda sources, and
    # CPython 3.11's ast.parse is not safe across threads ("AST constructor recursion depth
    # mismatch"), which would fail operations at random.
    # From the scratch directory, where schemathesis keeps its replay data.
    (cd "$work" && "$TOLLGATE_SCHEMATHESIS" run "$base/openapi.json" --url "$base" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --phases examples,coverage,fuzzing --max-examples "$max_examples" --seed "$seed" \
        --workers 1 --request-timeout 30 --warnings off \
        --report junit --report-junit-path "$report" "$@") >&2 || status=$?
    # Operations that passed and failed, from the JUnit report (one test case per operation).
    local counts
    counts="$(python3 - "$report" <<'PY'
import sys, xml.etree.ElementTree as tree
cases = list(tree.parse(sys.argv[1]).getroot().iter("testcase"))
bad = sum(1 for case in cases if case.find("failure") is not None or case.find("error") is not None)
print(len(cases) - bad, bad)
PY
)" || counts="0 1"
    read -r ok bad <<<"$counts"
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
}

fuzz tenant "$owner_key" --exclude-path-regex '^/(admin|runner)/' "${tenant_excluded[@]}"
fuzz runner "$runner_token" --include-path-regex '^/runner/'
fuzz admin "$admin_token" --include-path-regex '^/admin/'

if grep -q "panicked" "$work/server.log"; then
    echo "fuzz-api: the server panicked:" >&2
    grep -A5 "panicked" "$work/server.log" >&2
    failed=$((failed + 1))
fi
echo "fuzz result: $passed passed; $failed failed"
[ "$failed" -eq 0 ]
