-- Fixed window: at most `limit` requests per window, windows aligned to the epoch
-- (a minute window runs from :00 to :59). O(1) memory per client.
--
-- KEYS[1] the client's counter (a hash: w = window number, c = count)
-- ARGV[1] limit   ARGV[2] period (ms)   ARGV[3] now (ms), for tests only: '' uses Redis TIME
-- Returns {allowed 1|0, remaining, reset_ms (until the window ends), retry_after_ms}
local now
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
end
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local window = math.floor(now / period)
local window_end = (window + 1) * period

local stored = redis.call('HMGET', KEYS[1], 'w', 'c')
local count = 0
if tonumber(stored[1]) == window then
  count = tonumber(stored[2])
end
if count >= limit then
  return {0, 0, math.ceil(window_end - now), math.ceil(window_end - now)}
end
redis.call('HSET', KEYS[1], 'w', window, 'c', count + 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(window_end - now))
return {1, limit - count - 1, math.ceil(window_end - now), 0}
