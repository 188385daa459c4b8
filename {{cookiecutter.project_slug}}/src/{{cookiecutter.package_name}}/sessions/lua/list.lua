-- Describe a user's live sessions, and prune index entries whose session is gone.
-- KEYS[1] the user's index   KEYS[2] the user's metadata   KEYS[3..] sessions (from the index)
-- ARGV[1..] the id digests of KEYS[3..], in the same order
-- Returns {digest, created_ms, last_seen_ms, user_agent, ...} for live sessions
local generation = redis.call('HGET', KEYS[2], 'gen')
local reply = {}
for i = 3, #KEYS do
  local digest = ARGV[i - 2]
  local fields = redis.call('HMGET', KEYS[i], '_c', '_s', '_a', '_g')
  if fields[1] and fields[4] == generation then
    reply[#reply + 1] = digest
    reply[#reply + 1] = fields[1]
    reply[#reply + 1] = fields[2]
    reply[#reply + 1] = fields[3] or ''
  else
    redis.call('ZREM', KEYS[1], digest)
  end
end
return reply
