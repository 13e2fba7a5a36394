-- wrk script: every request is a POST of the same JSON body (BENCH_BODY) with a bearer token (BENCH_AUTH).
-- Both come from the environment so that the baseline and the gateway runs send byte-identical bodies.
wrk.method = "POST"
wrk.body = assert(os.getenv("BENCH_BODY"), "BENCH_BODY is not set")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH is not set")
-- Optional extra headers, one "name: value" per line (BENCH_HEADERS), e.g. x-neurometric-cache: true.
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
