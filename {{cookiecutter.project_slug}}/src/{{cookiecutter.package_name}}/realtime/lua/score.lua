-- Add to a member's score on a board: the all-time board and the current day's, at once.
-- Scores are stored negated, so that ascending order is best first with ties by member name.
-- KEYS[1] the all-time board   KEYS[2] the day's board   KEYS[3] the board's announce gate
-- ARGV[1] member   ARGV[2] the increment, negated   ARGV[3] when the day's board expires
-- (unix seconds)   ARGV[4] the announce gate's lifetime (ms)
-- Returns {stored score, competition rank, 1 if this call opened the announce gate else 0}.
local stored = redis.call('ZINCRBY', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZINCRBY', KEYS[2], ARGV[2], ARGV[1])
-- The day's board expires a week after its day; set once, on its first score.
if redis.call('TTL', KEYS[2]) == -1 then
  redis.call('EXPIREAT', KEYS[2], ARGV[3])
end
local better = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. stored)
local announce = redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) and 1 or 0
return {stored, better + 1, announce}
