-- End every session of a user at once, in O(1): a new logout generation makes every
-- existing session of the user invalid (each is deleted when next read, or expires).
-- KEYS[1] the user's metadata   KEYS[2] the user's index
-- ARGV[1] the new generation   ARGV[2] absolute max age (ms), how long metadata must live
redis.call('HSET', KEYS[1], 'gen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('DEL', KEYS[2])
