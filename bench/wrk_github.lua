-- wrk script: POST the signed GitHub push payload with a unique X-GitHub-Delivery per request.
--
-- GitHub's X-Hub-Signature-256 is an HMAC of the body only. Lua in wrk has no HMAC, so
-- bench/run.py pre-generates the bodies (the push fixture for N repositories, so N sessions)
-- and their signatures in a list file, one "<signature>\t<body file>" per line; request i uses
-- body i mod N. The delivery id is a header, not signed: "<prefix>-t<thread>-<i>", unique.
--
-- With kind "alertmanager" (bench/workloads.py), the first field is a bearer token and the body's
-- placeholder SEQ is replaced by the request number: each request is a new notification.
--
-- args: <list file> <delivery id prefix> [path] [kind: github | alertmanager]
local counter = 0
local bodies, sigs, prefix, path, kind = {}, {}, nil, nil, nil
local heads, tails = {}, {}
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local sig, file = line:match("^([^\t]+)\t(.+)$")
    local f = assert(io.open(file, "rb"))
    table.insert(bodies, f:read("*a"))
    table.insert(sigs, sig)
    f:close()
  end
  prefix = args[2] .. "-t" .. tostring(tid) .. "-"
  path = args[3] or "/hooks/github"
  kind = args[4] or "github"
  for k, body in ipairs(bodies) do
    local at = body:find("SEQ", 1, true)
    if at then
      heads[k], tails[k] = body:sub(1, at - 1), body:sub(at + 3)
    end
  end
end

function request()
  local k = counter % #bodies + 1
  counter = counter + 1
  if kind == "alertmanager" then
    return wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. sigs[k],
    }, heads[k] .. tostring(tid) .. "-" .. tostring(counter) .. "-" .. prefix .. tails[k])
  end
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = prefix .. counter,
    ["X-Hub-Signature-256"] = sigs[k],
  }, bodies[k])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, errors.status, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
