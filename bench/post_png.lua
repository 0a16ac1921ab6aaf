-- wrk script for bench/serve_load.sh: POST the PNG in $BODY_FILE to /invocations.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/png"
