-- Store a computed variant, if this caller still holds its lock and nothing was
-- invalidated while it computed; release the lock either way.
--
-- KEYS[1] namespace version   KEYS[2] entry   KEYS[3] this variant's lock
-- KEYS[4] the entry's invalidation marker (ms timestamp of the last invalidation)
-- ARGV[1] variant   ARGV[2] lock token   ARGV[3] namespace version seen at lookup
-- ARGV[4] server time (ms) of that lookup   ARGV[5] fresh TTL (ms)   ARGV[6] stale window (ms)
-- ARGV[7] etag   ARGV[8] body   ARGV[9] headers (JSON)   ARGV[10] most variants kept per entry
-- ARGV[11] HTTP status
--
-- Returns 1 when stored, 0 when not.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local owner = redis.call('GET', KEYS[3]) == ARGV[2]
if owner then
  redis.call('DEL', KEYS[3])
end
if not owner or redis.call('GET', KEYS[1]) ~= ARGV[3] then
  return 0
end
local invalidated = redis.call('GET', KEYS[4])
if invalidated and tonumber(invalidated) >= tonumber(ARGV[4]) then
  return 0
end

-- Query strings are client-chosen: bound the variants one entry may collect.
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[10]) * 8 then
  redis.call('DEL', KEYS[2])
end

local v = ARGV[1]
local fresh_until = now + tonumber(ARGV[5])
local stale_until = fresh_until + tonumber(ARGV[6])
redis.call('HSET', KEYS[2],
  v .. '|n', ARGV[3], v .. '|f', fresh_until, v .. '|x', stale_until, v .. '|a', now,
  v .. '|t', ARGV[7], v .. '|b', ARGV[8], v .. '|h', ARGV[9], v .. '|s', ARGV[11])
if redis.call('PTTL', KEYS[2]) < stale_until - now then
  redis.call('PEXPIRE', KEYS[2], stale_until - now)
end
return 1
