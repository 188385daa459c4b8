-- A stretch of a board, best first, with what competition ranks need (equal scores share a
-- rank, so an entry's rank is 1 + how many entries score strictly better).
-- KEYS[1] the board (scores stored negated: ascending order is best first, ties by name)
-- ARGV[1] 'page' or 'member'   ARGV[2] offset (page) or member (member)
-- ARGV[3] limit (page) or how many on each side of the member (member)
-- Returns {total, member's rank, member's stored score, rank of the first entry, its place
-- (from 0), member, stored score, member, stored score, ...} (false where it does not
-- apply); for 'member', an empty list when the member is not on the board.
local total = redis.call('ZCARD', KEYS[1])
local start, stop, rank, stored = 0, -1, false, false
if ARGV[1] == 'page' then
  start = tonumber(ARGV[2])
  stop = start + tonumber(ARGV[3]) - 1
else
  local position = redis.call('ZRANK', KEYS[1], ARGV[2])
  if not position then
    return {}
  end
  stored = redis.call('ZSCORE', KEYS[1], ARGV[2])
  rank = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. stored) + 1
  start = math.max(0, position - tonumber(ARGV[3]))
  stop = position + tonumber(ARGV[3])
end
local entries = redis.call('ZRANGE', KEYS[1], start, stop, 'WITHSCORES')
local first = false
if #entries > 0 then
  first = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. entries[2]) + 1
end
local reply = {total, rank, stored, first, start}
for _, value in ipairs(entries) do
  reply[#reply + 1] = value
end
return reply
