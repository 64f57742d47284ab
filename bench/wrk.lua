-- wrk script of the benchmark: cycles item ids over the 1000 rows, gives each webhook update
-- a unique update_id, and prints one JSON line of results in done().
-- Arguments (after --): mode path [update_base secret]
--   mode "get" / "post": path contains %d for the item id; "static": path as is;
--   "webhook": POST path with a Telegram message update, update_id = update_base + n;
--   "mix": path is a comma-separated list of mode:path, taken in turn (the RSS soak).
local mode, path, base, secret
local counter = 0
local mix = {}

function init(args)
  mode = args[1]
  path = args[2]
  base = tonumber(args[3] or "0")
  secret = args[4] or ""
  if mode == "webhook" or mode == "mix" then
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["X-Telegram-Bot-Api-Secret-Token"] = secret
  end
  if mode == "mix" then
    for m, p in string.gmatch(path, "(%a+):([^,]+)") do
      table.insert(mix, {m, p})
    end
  end
end

local body_format = '{"update_id":%d,"message":{"message_id":%d,"date":1764000000,'
  .. '"chat":{"id":4242,"type":"private","first_name":"Bench"},'
  .. '"from":{"id":4242,"is_bot":false,"first_name":"Bench"},'
  .. '"text":"hello from the benchmark"}}'

local function build(m, p)
  if m == "static" then
    return wrk.format("GET", p)
  elseif m == "get" then
    return wrk.format("GET", string.format(p, counter % 1000 + 1))
  elseif m == "post" then
    return wrk.format("POST", string.format(p, counter % 1000 + 1))
  else
    return wrk.format("POST", p, nil, string.format(body_format, base + counter, counter % 1000000 + 1))
  end
end

function request()
  counter = counter + 1
  if mode == "mix" then
    local entry = mix[counter % #mix + 1]
    return build(entry[1], entry[2])
  end
  return build(mode, path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
      .. '"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
