-- End one session: delete it and drop it from its user's index.
-- KEYS[1] session   KEYS[2] the user's index   ARGV[1] id digest
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
