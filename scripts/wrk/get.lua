-- wrk script for scripts/bench-load.sh: GET round-robin over BENCH_IDS ids
-- (obj-0 .. obj-N-1, preloaded by put.lua), and one machine-readable RESULT line.
local ids = tonumber(os.getenv("BENCH_IDS") or "1000")
local n = 0

function init(args)
  -- Threads start at different ids so they do not walk in step.
  n = math.random(ids)
end

function request()
  n = n + 1
  return wrk.format("GET", "/api/buckets/obj-" .. (n % ids))
end

done = dofile(os.getenv("BENCH_LUA_DIR") .. "/result.lua")
