-- wrk script for scripts/bench-load.sh: PUT 1 KiB bodies round-robin over BENCH_IDS ids
-- (the first pass creates them: 201, later ones replace: 204), and a RESULT line.
local ids = tonumber(os.getenv("BENCH_IDS") or "1000")
local body = string.rep("0123456789abcdef", 64) -- 1 KiB
local headers = { ["Content-Type"] = "application/octet-stream" }
local n = 0

function init(args)
  n = math.random(ids)
end

function request()
  n = n + 1
  return wrk.format("PUT", "/api/buckets/obj-" .. (n % ids), headers, body)
end

done = dofile(os.getenv("BENCH_LUA_DIR") .. "/result.lua")
