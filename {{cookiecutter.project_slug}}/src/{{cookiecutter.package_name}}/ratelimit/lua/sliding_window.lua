-- Sliding window, two-counter approximation: the previous window's count, weighted by
-- how much of it still overlaps the last `period`, plus the current window's count.
-- At most `limit` in any window of one period (within the approximation). O(1) memory.
--
-- KEYS[1] the client's counters (a hash: w = current window number, c = its count,
--         p = the previous window's count)
-- ARGV[1] limit   ARGV[2] period (ms)   ARGV[3] now (ms), for tests only: '' uses Redis TIME
-- Returns {allowed 1|0, remaining, reset_ms (until nothing is counted), retry_after_ms}
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
local elapsed = now - window * period

local stored = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local stored_window = tonumber(stored[1])
local current, previous = 0, 0
if stored_window == window then
  current, previous = tonumber(stored[2]), tonumber(stored[3])
elseif stored_window == window - 1 then
  previous = tonumber(stored[2])
end

local estimate = previous * (1 - elapsed / period) + current
local function reset_ms(cur, prev)
  if cur > 0 then
    return math.ceil(2 * period - elapsed)
  elseif prev > 0 then
    return math.ceil(period - elapsed)
  end
  return 0
end

if estimate + 1 > limit then
  -- Earliest time the estimate leaves room for one more request.
  local wait = nil
  if previous > 0 and current + 1 <= limit then
    local within = period * (1 - (limit - 1 - current) / previous) - elapsed
    if within < period - elapsed then
      wait = math.max(within, 0)
    end
  end
  if wait == nil then
    local into_next = 0
    if current > limit - 1 then
      into_next = period * (1 - (limit - 1) / current)
    end
    wait = (period - elapsed) + into_next
  end
  return {0, 0, reset_ms(current, previous), math.ceil(wait)}
end

current = current + 1
redis.call('HSET', KEYS[1], 'w', window, 'c', current, 'p', previous)
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * period - elapsed))
return {1, math.floor(limit - estimate - 1), reset_ms(current, previous), 0}
