#!/usr/bin/env bash
# Benchmark of the LLM gateway, POST /v1/chat/completions, side by side with LiteLLM's proxy
# and with the upstream alone, all three on the same fake upstream, with the same wrk and
# settings, in one run:
#   upstream   nginx answering a fixed chat.completion (with usage) to every POST: the floor
#   tollgate   the gateway: API key, llm_tokens quota, credit hold, the upstream call, settle,
#              interaction record (SQLite), on a model deployed on that upstream; one worker
#              thread per core (TOLLGATE_THREADS), as it starts by default
#   litellm    LiteLLM's proxy (PyPI litellm[proxy]) in master-key mode (no database, so no
#              spend tracking), its model_list entry on that upstream
#
#   scripts/bench-llm-gateway.sh                       # defaults: 10 s per run, 32 connections
#   DURATION=5s CONNECTIONS=64 scripts/bench-llm-gateway.sh
#   LITELLM_WORKERS=2 scripts/bench-llm-gateway.sh     # LiteLLM's uvicorn workers (default 1)
#   PERF_OUT=/tmp/gateway.perf scripts/bench-llm-gateway.sh
#       also records where Tollgate's time goes during its saturation run (linux-perf,
#       Debian: apt-get install -y linux-perf); read it with
#       perf report -i /tmp/gateway.perf --no-children --sort dso,symbol
#
# Builds the release server, starts nginx, Tollgate (throwaway database, TOLLGATE_WEBHOOKS_
# ALLOW_PRIVATE so a provider key may point at loopback) and LiteLLM on free loopback ports,
# arranges a tenant (ENTERPRISE with the request limit and the llm_tokens quotas lifted,
# credits granted by a platform admin, a provider key on nginx, a model, an llm:write API
# key), checks one request on each target, then per target: a 1 s warm-up, wrk -t1 -c1 (the
# latency added over the upstream alone, p50/p99) and wrk -t2 -cCONNECTIONS (req/s at
# saturation). Prints a summary, the calls Tollgate recorded against wrk's count and the
# tenant's credits. Fails on any non-2xx answer. Stops every process it started on every exit
# path; waits at most 120 s for LiteLLM to come up.
# Needs: cargo, curl, jq, python3 (with venv), wrk, nginx (Debian: apt-get install -y wrk
# nginx jq curl python3-venv); installs LiteLLM once into
# ${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}/litellm-venv (needs PyPI the first time).
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10s}"
LITELLM_VERSION="${LITELLM_VERSION:-1.108.7}"
LITELLM_WORKERS="${LITELLM_WORKERS:-1}"
NGINX="${NGINX:-/usr/sbin/nginx}"
PASSWORD="correct horse battery staple"
here="scripts/bench-llm-gateway"

die() {
    echo "bench-llm-gateway: $*" >&2
    exit 1
}

for tool in cargo curl jq wrk python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (Debian: apt-get install -y $tool)"
done
[ -x "$NGINX" ] || die "nginx is required at $NGINX (Debian: apt-get install -y nginx)"

# LiteLLM, once, in its own venv (reused when it holds the pinned version).
tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
venv="$tools/litellm-venv"
litellm_version() {
    "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true
}
if [ -x "$venv/bin/litellm" ] && [ "$(litellm_version)" = "$LITELLM_VERSION" ]; then
    echo "== litellm $LITELLM_VERSION: already in $venv"
else
    echo "== installing litellm[proxy] $LITELLM_VERSION into $venv"
    mkdir -p "$tools"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "litellm[proxy]==$LITELLM_VERSION" || die "pip could not install litellm[proxy]==$LITELLM_VERSION"
fi

echo "== building the release server"
cargo build --release --quiet -p tollgate-server
target_dir="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
server="$target_dir/release/tollgate-server"

work="$(mktemp -d)"
chmod 755 "$work" # nginx's worker runs as nobody when started as root
nginx_pid=""
server_pid=""
litellm_pid=""
# Stops one process (TERM, up to 10 s, then KILL); with "group", its whole process group.
stop() {
    local pid="$1" target="$1"
    [ "${2:-}" = group ] && target="-$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "$target" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "$target" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$litellm_pid" group
    stop "$server_pid"
    stop "$nginx_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The fake upstream: nginx answering the fixed completion to POST /v1/chat/completions.
completion="$(jq -c . "$here/completion.json")"
request="$(jq -c . "$here/request.json")"
case "$completion" in *"'"* | *'$'*) die "completion.json must hold no ' or \$ (nginx quoting)" ;; esac
upstream_port="$(free_port)"
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$upstream_port;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$completion';
        }
        location / { return 404; }
    }
}
EOF
echo "== starting nginx (the fake upstream) on 127.0.0.1:$upstream_port"
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" \
    2>>"$work/nginx/logs/error.log" &
nginx_pid=$!
upstream_url="http://127.0.0.1:$upstream_port/v1/chat/completions"

# LiteLLM starts slowly: start it now, wait for it after Tollgate is arranged.
litellm_port="$(free_port)"
litellm_master="sk-bench-master-0123456789"
cat >"$work/litellm.yaml" <<EOF
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-upstream
      api_base: http://127.0.0.1:$upstream_port/v1
      api_key: sk-upstream-dummy-0123456789
general_settings:
  master_key: $litellm_master
litellm_settings:
  telemetry: false
EOF
echo "== starting LiteLLM $LITELLM_VERSION ($LITELLM_WORKERS worker(s)) on 127.0.0.1:$litellm_port"
# Its own process group (setsid), so that cleanup stops its workers too. No network: the
# model cost map is the packaged one; LITELLM_LOG=ERROR also silences uvicorn's access log.
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR LITELLM_TELEMETRY=False \
    NO_DOCS=True DISABLE_ADMIN_UI=True \
    setsid "$venv/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 \
    --port "$litellm_port" --num_workers "$LITELLM_WORKERS" >"$work/litellm.log" 2>&1 &
litellm_pid=$!
litellm_url="http://127.0.0.1:$litellm_port/v1/chat/completions"

export TOLLGATE_DATABASE_URL="$work/tollgate.db"
export TOLLGATE_JWT_SECRET="bench-secret-bench-secret-bench-secret-01"
export TOLLGATE_LOG="warn,tollgate_server=info"
export TOLLGATE_CRON_INTERVAL=3600
export TOLLGATE_WEBHOOKS_ALLOW_PRIVATE=true
TOLLGATE_SECRETS_KEYS="k1:$(head -c 32 /dev/urandom | base64)"
export TOLLGATE_SECRETS_KEYS

echo "== starting the server on a free loopback port"
"$server" --address 127.0.0.1:0 serve 2>"$work/server.log" &
server_pid=$!
address=""
for _ in $(seq 1 300); do
    address="$(sed -n 's/.*Tollgate is listening address=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -n1)"
    [ -n "$address" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$work/server.log" >&2
        die "the server exited during startup"
    fi
    sleep 0.1
done
if [ -z "$address" ]; then
    cat "$work/server.log" >&2
    die "the server did not report its address within 30 s"
fi
base="http://$address/api/v1"
tollgate_url="http://$address/v1/chat/completions"
echo "   listening on $address"

# Calls the API with JSON and fails loudly on an unexpected status; prints the body.
call() {
    local method="$1" path="$2" expected="$3" body="$4"
    shift 4
    local status
    status="$(curl -sS -o "$work/body" -w '%{http_code}' -X "$method" "$base/$path" \
        -H 'Content-Type: application/json' "$@" ${body:+--data "$body"})"
    if [ "$status" != "$expected" ]; then
        echo "bench-llm-gateway: $method /api/v1/$path answered $status, expected $expected:" >&2
        cat "$work/body" >&2
        echo >&2
        exit 1
    fi
    cat "$work/body"
}

echo "== arranging a tenant, its plan, credits, a provider key, a model and an API key"
registered="$(call POST auth/register 201 "$(jq -n --arg p "$PASSWORD" \
    '{tenant_name:"Bench Inc.",tenant_slug:"bench",email:"owner@bench.test",password:$p,name:"Owner"}')")"
tenant_id="$(jq -r .tenant.id <<<"$registered")"
jwt="$(jq -r .access_token <<<"$registered")"

"$server" admin create-platform-admin --email ops@bench.test --password "$PASSWORD" >/dev/null
admin_jwt="$(call POST admin/login 200 "$(jq -n --arg p "$PASSWORD" \
    '{email:"ops@bench.test",password:$p}')" | jq -r .access_token)"
call PUT "admin/tenants/$tenant_id/plan" 204 \
    '{"plan":"ENTERPRISE","overrides":{"requests_per_minute":100000000,"daily_llm_tokens":null,"monthly_llm_tokens":null}}' \
    -H "Authorization: Bearer $admin_jwt" >/dev/null
# The largest single grant; a call costs its 18 tokens at 1 credit each.
granted=1000000000000
call POST "admin/tenants/$tenant_id/credits/grants" 201 \
    "$(jq -n --argjson a "$granted" '{amount:$a,reason:"benchmark"}')" \
    -H "Authorization: Bearer $admin_jwt" >/dev/null

provider_key_id="$(call POST llm/provider-keys 201 "$(jq -n --arg u "http://127.0.0.1:$upstream_port/v1" \
    '{name:"bench-upstream",kind:"openai",base_url:$u,api_key:"sk-upstream-dummy-0123456789"}')" \
    -H "Authorization: Bearer $jwt" | jq -r .id)"
call POST llm/models 201 "$(jq -n --arg k "$provider_key_id" \
    '{name:"bench-model",deployments:[{provider_key_id:$k,model:"bench-upstream"}],
      context_window:100000,max_output_tokens:1000,
      input_price:1000000,output_price:1000000,cached_input_price:1000000}')" \
    -H "Authorization: Bearer $jwt" >/dev/null
api_key="$(call POST api-keys 201 '{"name":"bench","scopes":["llm:write","llm:read"]}' \
    -H "Authorization: Bearer $jwt" | jq -r .key)"

echo "== waiting for LiteLLM (at most 120 s)"
ready=""
for _ in $(seq 1 240); do
    if ! kill -0 "$litellm_pid" 2>/dev/null; then
        tail -n 40 "$work/litellm.log" >&2
        die "LiteLLM exited during startup"
    fi
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$litellm_port/health/liveliness" 2>/dev/null; then
        ready=yes
        break
    fi
    sleep 0.5
done
if [ -z "$ready" ]; then
    tail -n 40 "$work/litellm.log" >&2
    die "LiteLLM did not answer /health/liveliness within 120 s"
fi

# One request per target before loading it: 200 and a chat.completion with its usage.
check() {
    local label="$1" url="$2" auth="$3" status
    status="$(curl -sS -D "$work/headers" -o "$work/answer" -w '%{http_code}' -X POST "$url" \
        -H 'Content-Type: application/json' -H "Authorization: $auth" --data "$request")"
    if [ "$status" != 200 ] || ! jq -e '.object == "chat.completion" and .usage.total_tokens > 0
            and (.choices[0].message.content | length > 0)' "$work/answer" >/dev/null 2>&1; then
        echo "bench-llm-gateway: the $label sanity check answered $status:" >&2
        cat "$work/answer" >&2
        echo >&2
        [ "$label" = litellm ] && tail -n 40 "$work/litellm.log" >&2
        exit 1
    fi
}
check upstream "$upstream_url" "Bearer sk-upstream-dummy-0123456789"
check tollgate "$tollgate_url" "Bearer $api_key"
grep -qi '^x-tollgate-interaction-id:' "$work/headers" || die "Tollgate's answer names no interaction"
check litellm "$litellm_url" "Bearer $litellm_master"

# wrk's latency figure ("123.45us", "1.20ms", "1.01s", "1.00m") in microseconds.
micros() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) f = 1; else if (v ~ /ms$/) f = 1000; else if (v ~ /m$/) f = 60000000
        else if (v ~ /s$/) f = 1000000; else f = 1
        printf "%.0f", n * f }'
}

# Where the CPU went during a run: the machine's busy share (/proc/stat) and the target's
# processes (/proc/PID/task/*/stat), in all and its busiest thread, in % of one core.
clk_tck="$(getconf CLK_TCK)"
machine_ticks() {
    local u n s i w irq sirq st
    read -r _ u n s i w irq sirq st _ </proc/stat
    echo "$((u + n + s + irq + sirq + st)) $((u + n + s + i + w + irq + sirq + st))"
}
thread_ticks() {
    local pid
    for pid in "$@"; do cat /proc/"$pid"/task/*/stat 2>/dev/null || true; done |
        sed 's/^\([0-9]*\) .*) /\1 /' | awk '{print $1, $13 + $14}'
}
target_pids() {
    case "$1" in
        upstream) echo "$nginx_pid" $(pgrep -P "$nginx_pid" || true) ;;
        tollgate) echo "$server_pid" ;;
        litellm) ps -o pid= -g "$litellm_pid" ;;
    esac
}

# Runs wrk on one target; sets rps, p50, p99 (µs), requests and cpu (where the CPU went);
# fails on non-2xx answers.
declare -A answered=()
run_wrk() {
    local label="$1" url="$2" auth="$3" threads="$4" connections="$5" duration="$6"
    local pids machine_before machine_after start end
    pids="$(target_pids "$label")"
    # shellcheck disable=SC2086
    thread_ticks $pids >"$work/ticks.before"
    machine_before="$(machine_ticks)"
    local perf_pid=""
    if [ -n "${PERF_OUT:-}" ] && [ "$label" = tollgate ] && [ "$connections" = "$CONNECTIONS" ]; then
        perf record -F 999 -g -p "$server_pid" -o "$PERF_OUT" >/dev/null 2>"$work/perf.log" &
        perf_pid=$!
    fi
    start="$(date +%s%N)"
    BENCH_BODY="$request" BENCH_AUTH="$auth" \
        wrk -t"$threads" -c"$connections" -d"$duration" --timeout 10s --latency \
        -s "$here/post.lua" "$url" >"$work/wrk.out"
    end="$(date +%s%N)"
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    machine_after="$(machine_ticks)"
    # shellcheck disable=SC2086
    thread_ticks $pids >"$work/ticks.after"
    cpu="$(awk -v hz="$clk_tck" -v ns=$((end - start)) -v mb="$machine_before" -v ma="$machine_after" '
        NR == FNR { before[$1] = $2; next }
        { d = $2 - before[$1]; all += d; if (d > 0) busy[++n] = d }
        END {
            split(mb, b, " "); split(ma, a, " ")
            ticks = ns / 1e9 * hz
            # The busiest threads first (a small selection sort: few threads are busy).
            list = ""
            for (i = 1; i <= n && i <= 4; i++) {
                m = i
                for (j = i + 1; j <= n; j++) if (busy[j] > busy[m]) m = j
                t = busy[i]; busy[i] = busy[m]; busy[m] = t
                if (100 * busy[i] / ticks >= 2) list = list sprintf(" %.0f%%", 100 * busy[i] / ticks)
            }
            printf "target %.0f%% (busiest threads:%s), machine %.0f%% busy",
                100 * all / ticks, list, 100 * (a[1] - b[1]) / (a[2] - b[2])
        }' "$work/ticks.before" "$work/ticks.after")"
    local errors socket_errors
    errors="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$work/wrk.out")"
    socket_errors="$(sed -n 's/^ *Socket errors: *//p' "$work/wrk.out")"
    requests="$(awk '/requests in/ {print $1}' "$work/wrk.out")"
    answered[$label]=$(( ${answered[$label]:-0} + requests ))
    if [ -n "$errors" ] || [ -n "$socket_errors" ]; then
        cat "$work/wrk.out" >&2
        [ "$label" = litellm ] && tail -n 40 "$work/litellm.log" >&2
        [ "$label" = tollgate ] && tail -n 40 "$work/server.log" >&2
        die "the $label run (-c$connections) had ${errors:-0} non-2xx answers${socket_errors:+, socket errors: $socket_errors}"
    fi
    rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$work/wrk.out")"
    p50="$(micros "$(awk '$1 == "50%" {print $2}' "$work/wrk.out")")"
    p99="$(micros "$(awk '$1 == "99%" {print $2}' "$work/wrk.out")")"
}

# How busy the machine is with other work before loading it (the figures share its cores).
cpu_busy() {
    local a b
    read -r _ a1 a2 a3 a4 a5 a6 a7 _ </proc/stat
    sleep 2
    read -r _ b1 b2 b3 b4 b5 b6 b7 _ </proc/stat
    a=$(( (b1 + b2 + b3 + b6 + b7) - (a1 + a2 + a3 + a6 + a7) ))
    b=$(( a + (b4 + b5) - (a4 + a5) ))
    echo $(( b > 0 ? 100 * a / b : 0 ))
}
idle_busy="$(cpu_busy)"
[ "$idle_busy" -le 10 ] || echo "   warning: the CPU is $idle_busy% busy before the runs: the figures will be low"

labels=(upstream tollgate litellm)
declare -A url=([upstream]="$upstream_url" [tollgate]="$tollgate_url" [litellm]="$litellm_url")
declare -A auth=([upstream]="Bearer sk-upstream-dummy-0123456789" [tollgate]="Bearer $api_key"
    [litellm]="Bearer $litellm_master")
declare -A p50_1=() p99_1=() rps_1=() rps_n=() p50_n=() p99_n=() cpu_n=()
for label in "${labels[@]}"; do
    echo "== $label: warm-up 1 s, wrk -t1 -c1 -d$DURATION, wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
    run_wrk "$label" "${url[$label]}" "${auth[$label]}" 1 4 1s
    run_wrk "$label" "${url[$label]}" "${auth[$label]}" 1 1 "$DURATION"
    p50_1[$label]=$p50 p99_1[$label]=$p99 rps_1[$label]=$rps
    run_wrk "$label" "${url[$label]}" "${auth[$label]}" "$THREADS" "$CONNECTIONS" "$DURATION"
    rps_n[$label]=$rps p50_n[$label]=$p50 p99_n[$label]=$p99 cpu_n[$label]="$cpu"
done

# What Tollgate recorded: its calls today (the usage report's llm_by_model) against the 2xx
# answers wrk counted (wrk leaves out the answers in flight when a run ends), and the pool.
sleep 1
usage="$(curl -sS "$base/usage" -H "Authorization: Bearer $jwt")"
recorded="$(jq '[.llm_by_model.day[].calls] | add // 0' <<<"$usage")"
charged="$(jq '[.llm_by_model.day[].cost] | add // 0' <<<"$usage")"
latest="$(curl -sS "$base/llm/interactions?limit=1" -H "Authorization: Bearer $jwt" |
    jq -c '.data[0] | {status, prompt_tokens, completion_tokens, cost, latency_ms}')"
pool="$(curl -sS "$base/credits" -H "Authorization: Bearer $jwt" | jq -c '.pool // . | {total, used, reserved, remaining}')"
# The holds left (read-only, from the throwaway database): calls whose client left before
# the gateway settled them, when a wrk run stopped; cron releases them after an hour.
holds="$(python3 - "$work/tollgate.db" <<'PY' 2>/dev/null || echo "?"
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute("SELECT status, COUNT(*), SUM(amount) FROM credit_reservations GROUP BY status").fetchall()
print(", ".join(f"{status} {count} ({amount} credits)" for status, count, amount in rows))
PY
)"

ms() { awk -v u="$1" 'BEGIN { printf "%.3f ms", u / 1000 }'; }
added() { awk -v u="$1" 'BEGIN { printf "%+.3f ms", u / 1000 }'; }
cores="$(nproc)"
server_threads="${TOLLGATE_THREADS:-$cores}"

echo
echo "== POST /v1/chat/completions, $DURATION per run, wrk on loopback; all processes (wrk, nginx,"
echo "   Tollgate, LiteLLM) share the same $cores cores; only the target under load is busy"
echo "   CPU busy before the runs (other work on the machine): $idle_busy%"
echo "   upstream: nginx, 1 worker, a fixed $(jq -r .usage.total_tokens <<<"$completion")-token completion;" \
    "request: $request"
printf '%-9s| %-24s| %-26s| %s\n' "" "-c1: p50 / p99" "added over upstream" \
    "-t$THREADS -c$CONNECTIONS: req/s (p50 / p99)"
for label in "${labels[@]}"; do
    if [ "$label" = upstream ]; then
        extra="-"
    else
        extra="$(added $((p50_1[$label] - p50_1[upstream]))) / $(added $((p99_1[$label] - p99_1[upstream])))"
    fi
    printf '%-9s| %-24s| %-26s| %s\n' "$label" \
        "$(ms "${p50_1[$label]}") / $(ms "${p99_1[$label]}")" "$extra" \
        "${rps_n[$label]} ($(ms "${p50_n[$label]}") / $(ms "${p99_n[$label]}"))"
done
echo "CPU during the -c$CONNECTIONS runs, in % of one core (the machine: % of all $cores):"
for label in "${labels[@]}"; do
    printf '   %-9s %s\n' "$label" "${cpu_n[$label]}"
done
ratio="$(awk -v t="${rps_n[tollgate]}" -v l="${rps_n[litellm]}" 'BEGIN { printf "%.1f", t / l }')"
per_core() { awk -v r="$1" -v n="$2" 'BEGIN { printf "%.0f", r / n }'; }
echo "Tollgate / LiteLLM req/s at -c$CONNECTIONS: ${ratio}x. Per core (the $cores are shared with wrk and nginx):"
echo "   Tollgate $(per_core "${rps_n[tollgate]}" "$cores") req/s per core ($server_threads worker threads, one SQLite writer at a time), LiteLLM" \
    "$(per_core "${rps_n[litellm]}" "$(( LITELLM_WORKERS < cores ? LITELLM_WORKERS : cores ))") req/s per worker core ($LITELLM_WORKERS uvicorn worker(s), no database)"
echo "Tollgate recorded $recorded calls costing $charged credits; wrk counted ${answered[tollgate]} 2xx answers" \
    "(+1 sanity check; the rest finished after wrk stopped)"
echo "   latest interaction: $latest"
echo "   pool: $pool (granted $granted)"
echo "   holds: $holds"
problems=()
[ "$recorded" -ge $((answered[tollgate] + 1)) ] || problems+=("fewer calls recorded than answered")
[ "$(jq .used <<<"$pool")" = "$charged" ] || problems+=("pool used != the interactions' cost")
[ "$(jq .total <<<"$pool")" = "$granted" ] || problems+=("pool total != granted")
[ "$(jq '.total - .used - .reserved' <<<"$pool")" = "$(jq .remaining <<<"$pool")" ] ||
    problems+=("pool remaining != total - used - reserved")
if [ "${#problems[@]}" -gt 0 ]; then
    die "inconsistent: $(IFS=';'; echo "${problems[*]}")"
fi
echo "LiteLLM's log: $(grep -c -E 'ERROR|Traceback|Exception' "$work/litellm.log" || true) error lines"
echo "   consistent: calls >= answers, pool used = the interactions' cost, remaining = total - used - reserved"
