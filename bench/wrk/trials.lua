-- LightMill experiment clients posting their trials (bench/logging_api.py runs it).
--
--   wrk -t N -c N -d 10s -s bench/wrk/trials.lua http://HOST:PORT -- CONFIG.lua
--
-- One connection per wrk thread, one run per thread: each thread posts its run's trials strictly
-- in order (the server refuses any other), moving on only when a post answers 200, as
-- lightmill-runner does. A body is what a pointing experiment sends: a few trial measures (one
-- nested) and 5 events of 4 measures each, values varying with the trial. CONFIG is a Lua file
-- returning {experiment = "...", per_block = TRIALS_PER_BLOCK, runs = {{run, token, next}, ...}}:
-- thread i takes runs[i], from its trial `next` (a position counted across blocks).
--
-- With TRIALS_PORTS=P1,P2,... in the environment, thread i connects to port P((i - 1) mod n + 1)
-- of the URL's host instead of the URL's port: one wrk spread over several servers, at no cost
-- beyond wrk's own (the servers' connections are dealt round-robin, as runs are).
--
-- done() prints one line `WRK_JSON {...}`: wrk's totals and latency percentiles (microseconds),
-- and each thread's run, next position, trials stored (200) and other answers.

wrk.method = "POST"
-- What a browser sends for a string body posted cross-origin without a preflight.
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["Origin"] = "https://experiments.example.org"

local threads = {}
local counter = 0

local ports = {}
for port in string.gmatch(os.getenv("TRIALS_PORTS") or "", "%d+") do
   table.insert(ports, port)
end

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   if #ports > 0 then
      thread.addr = wrk.lookup(wrk.host, ports[(counter - 1) % #ports + 1])[1]
   end
   table.insert(threads, thread)
end

local experiment, run, token, per_block

function init(args)
   local config = dofile(args[1])
   local mine = config.runs[id]
   experiment, per_block = config.experiment, config.per_block
   run, token = mine[1], mine[2]
   position, stored, failed, last_error = mine[3], 0, 0, ""
   -- Read back by done() (through thread:get, which sees this state's globals).
   run_id = run
end

local kinds = {"down", "move", "move", "move", "up"}

local function body(n)
   local events = {}
   for e = 0, 4 do
      events[e + 1] = string.format(
         '{"t":%d,"x":%.2f,"y":%.2f,"type":"%s"}',
         e * 37 + n % 11, 412.5 + 3.75 * e + n % 17, 288.25 - 2.5 * e - n % 13, kinds[e + 1]
      )
   end
   return string.format(
      '{"token":"%s","measures":{"trial":{"time":%d,"durations":{"reaction":%d,"movement":%d},' ..
      '"hit":%s,"errors":%d},"events":[%s]}}',
      token, 620 + n % 389, 210 + n % 97, 410 + n % 293, n % 7 == 0 and "false" or "true",
      n % 3, table.concat(events, ",")
   )
end

function request()
   local block = math.floor(position / per_block)
   local path = string.format(
      "/api/trial/%s/%s/%d/%d", experiment, run, block, position - block * per_block
   )
   return wrk.format(nil, path, nil, body(position))
end

function response(status, headers, answer)
   if status == 200 then
      position = position + 1
      stored = stored + 1
   else
      failed = failed + 1
      last_error = status .. " " .. string.sub(answer or "", 1, 160)
   end
end

local function quoted(text)
   return '"' .. string.gsub(text, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end) .. '"'
end

function done(summary, latency, requests)
   local per_thread = {}
   for i, thread in ipairs(threads) do
      per_thread[i] = string.format(
         '{"run":%s,"next":%d,"stored":%d,"failed":%d,"last_error":%s}',
         quoted(thread:get("run_id")), thread:get("position"), thread:get("stored"),
         thread:get("failed"), quoted(thread:get("last_error"))
      )
   end
   local e = summary.errors
   local p = {}
   for _, q in ipairs({50, 90, 95, 99, 99.9}) do
      table.insert(p, string.format('"%s":%d', tostring(q), latency:percentile(q)))
   end
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"status_errors":%d,' ..
      '"latency_us":{"min":%d,"mean":%.1f,"max":%d,%s},"threads":[%s]}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency.min, latency.mean, latency.max, table.concat(p, ","), table.concat(per_thread, ",")
   ))
end
