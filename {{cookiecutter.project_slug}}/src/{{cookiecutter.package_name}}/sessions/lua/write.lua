-- Change some fields of a live session, leaving the others alone (so concurrent requests
-- that change different fields keep each other's work). Never brings a session back:
-- if it was revoked meanwhile, nothing is written.
-- KEYS[1] session   ARGV[1] how many field, value pairs follow; then the pairs; then
-- the names of fields to delete
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local pairs_count = tonumber(ARGV[1])
for i = 2, 1 + 2 * pairs_count, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
for i = 2 + 2 * pairs_count, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
return 1
