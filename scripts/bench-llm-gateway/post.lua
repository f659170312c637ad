-- wrk script of scripts/bench-llm-gateway.sh: one POST of an OpenAI chat completion request,
-- the same for every target.
--   BENCH_BODY   the JSON request body (required)
--   BENCH_AUTH   the Authorization header's value (left out when unset or empty)
-- wrk loads this file once per thread; each thread reads the environment itself.
local body = os.getenv("BENCH_BODY")
if body == nil or body == "" then
    error("post.lua: BENCH_BODY is not set")
end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
    wrk.headers["Authorization"] = auth
end
