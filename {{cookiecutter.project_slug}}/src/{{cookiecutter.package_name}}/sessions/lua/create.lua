-- Create an anonymous session (an id the server chose) with its first fields.
-- KEYS[1] session
-- ARGV[1] idle TTL (ms)   ARGV[2] absolute max age (ms)   ARGV[3] CSRF token
-- ARGV[4..] field, value pairs
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local max_age = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], '_c', now, '_s', now, '_e', now + max_age, '_x', ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), max_age))
return now
