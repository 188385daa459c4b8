-- Release a lock only if this caller still owns it (a lapsed lock may belong to another).
-- KEYS[1] lock   ARGV[1] token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
