-- GCRA (generic cell rate algorithm): token-bucket behaviour in one number, the
-- theoretical arrival time (TAT) of the next request. A fresh bucket admits a burst of
-- `limit`, then one request every period/limit. O(1) memory per client.
--
-- KEYS[1] the client's bucket
-- ARGV[1] limit   ARGV[2] period (ms)   ARGV[3] now (ms), for tests only: '' uses Redis TIME
-- Returns {allowed 1|0, remaining, reset_ms (until the bucket is full again), retry_after_ms}
local now
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
end
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local interval = period / limit

local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
-- At least 1 ms: with a huge limit the interval can vanish below the clock's resolution.
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.max(math.ceil(new_tat - now), 1))
return {1, math.floor((now + period - new_tat) / interval), math.ceil(new_tat - now), 0}
