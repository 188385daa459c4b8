-- Drop every variant of one entry and record when, so a computation that started
-- before this moment cannot store its now-outdated result afterwards.
-- KEYS[1] entry   KEYS[2] invalidation marker   ARGV[1] how long to keep the marker (ms)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], now, 'PX', ARGV[1])
return now
