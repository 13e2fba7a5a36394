-- wrk script: every request is a POST of the same JSON body (BENCH_BODY) with a bearer token (BENCH_AUTH).
-- Both come from the environment so that the baseline and the gateway runs send byte-identical bodies.
wrk.method = "POST"
wrk.body = assert(os.getenv("BENCH_BODY"), "BENCH_BODY is not set")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH is not set")
