-- wrk script: POST pre-generated bodies in rotation, one per request.
-- Arguments (after --): body_dir count path header_name header_value run
-- Each "@@RQ@@" in a body becomes "<run>t<thread>r<counter>", unique per request, so the
-- dedupe_ids of a rotated body never repeat; ``run`` is unique per wrk run, for a server that
-- outlives one (every wrk numbers its threads and requests from 1 again: a second run against
-- the same server re-sent the first one's ids, all duplicates). done() prints one "WRK_JSON {...}" line.

local TOKEN = "@@RQ@@"
local bodies = {}
local counter = 0
local path = "/"
local headers = { ["Content-Type"] = "application/json" }
local thread_count = 0
local run = ""

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

local function split(s)
  local parts, pos = {}, 1
  while true do
    local a, b = string.find(s, TOKEN, pos, true)
    if not a then
      parts[#parts + 1] = string.sub(s, pos)
      return parts
    end
    parts[#parts + 1] = string.sub(s, pos, a - 1)
    pos = b + 1
  end
end

function init(args)
  local dir, count = args[1], tonumber(args[2])
  path = args[3]
  headers[args[4]] = args[5]
  run = args[6] or ""
  for i = 0, count - 1 do
    local f = assert(io.open(string.format("%s/body-%05d.json", dir, i), "rb"))
    bodies[i + 1] = split(f:read("*a"))
    f:close()
  end
end

function request()
  counter = counter + 1
  local parts = bodies[(counter - 1) % #bodies + 1]
  local body = parts[1]
  if #parts > 1 then
    body = table.concat(parts, string.format("%st%dr%x", run, thread_id, counter))
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({ 50, 75, 90, 99, 99.9 }) do
    p[#p + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d,"latency_mean_us":%.1f,'
      .. '"latency_max_us":%d,"percentiles_us":{%s}}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency.max, table.concat(p, ",")))
end
