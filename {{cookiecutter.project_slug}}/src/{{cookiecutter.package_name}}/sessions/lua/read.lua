-- Read a session in one round trip. Writes only when the session must die (absolute
-- age, or its user logged out everywhere) or when its idle timer is due a roll-forward
-- (at most once per touch interval), never on an ordinary read.
--
-- KEYS[1] session   KEYS[2] the user's session metadata (holds the logout generation)
-- ARGV[1] touch interval (ms)   ARGV[2] idle TTL (ms)
-- Returns {} when there is no live session, else {now_ms, field, value, field, value, ...}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then
  return {}
end
local fields = {}
for i = 1, #flat, 2 do
  fields[flat[i]] = flat[i + 1]
end

local expires = tonumber(fields['_e'])
if not expires or now >= expires then
  redis.call('DEL', KEYS[1])
  return {}
end
if fields['_u'] and fields['_g'] ~= redis.call('HGET', KEYS[2], 'gen') then
  redis.call('DEL', KEYS[1])
  return {}
end

if now - tonumber(fields['_s']) >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], '_s', now)
  redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[2]), expires - now))
end

local reply = {now}
for i = 1, #flat do
  reply[#reply + 1] = flat[i]
end
return reply
