-- Start an authenticated session under a new id, in one round trip: create it (with
-- the fields carried over from the previous session), index it under its user, and
-- delete the previous session so its id stops working at once.
--
-- KEYS[1] new session   KEYS[2] the user's index (sorted set: id digest -> expiry)
-- KEYS[3] the user's metadata (logout generation)   KEYS[4] previous session (optional)
-- ARGV[1] idle TTL (ms)   ARGV[2] absolute max age (ms)   ARGV[3] new id digest
-- ARGV[4] username   ARGV[5] CSRF token   ARGV[6] user agent   ARGV[7] previous id digest or ''
-- ARGV[8] a fresh generation, used if the user has none yet   ARGV[9..] field, value pairs
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local idle = tonumber(ARGV[1])
local max_age = tonumber(ARGV[2])

local generation = redis.call('HGET', KEYS[3], 'gen')
if not generation then
  generation = ARGV[8]
  redis.call('HSET', KEYS[3], 'gen', generation)
end
if redis.call('PTTL', KEYS[3]) < max_age then
  redis.call('PEXPIRE', KEYS[3], max_age)
end

redis.call('HSET', KEYS[1], '_c', now, '_s', now, '_e', now + max_age, '_u', ARGV[4],
  '_x', ARGV[5], '_a', ARGV[6], '_g', generation)
for i = 9, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], math.min(idle, max_age))

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + max_age, ARGV[3])
if ARGV[7] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[7])
end
if redis.call('PTTL', KEYS[2]) < max_age then
  redis.call('PEXPIRE', KEYS[2], max_age)
end

if KEYS[4] then
  redis.call('DEL', KEYS[4])
end
return now
