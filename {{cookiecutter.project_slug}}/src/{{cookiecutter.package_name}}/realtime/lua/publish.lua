-- Publish one message to a topic, recoverably, in one atomic step: take the topic's next
-- offset, append the message to the topic's capped history, publish it live.
-- KEYS[1] the topic's meta hash (epoch, offset)   KEYS[2] its history stream
-- ARGV[1] channel   ARGV[2] topic as clients see it   ARGV[3] data (JSON text)
-- ARGV[4] history size   ARGV[5] history TTL (s)   ARGV[6] epoch to start with if there is
-- none (the history was never written, expired or was lost)   ARGV[7] '1': sharded pub/sub
-- Returns the message's position, "<epoch>:<offset>".
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  -- A new epoch: whatever history is left belongs to the old one.
  epoch = ARGV[6]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local position = epoch .. ':' .. offset
local frame = '{"type":"message","topic":"' .. ARGV[2] .. '","id":"' .. position
  .. '","data":' .. ARGV[3] .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'f', frame)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
-- Live subscribers get "<epoch>:<offset>\n<frame>": the position to order by, then the
-- frame to forward as it is.
local message = position .. '\n' .. frame
if ARGV[7] == '1' then
  redis.call('SPUBLISH', ARGV[1], message)
else
  redis.call('PUBLISH', ARGV[1], message)
end
return position
