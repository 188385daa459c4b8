-- What a topic's history holds after an offset, to resume a subscriber or fill a gap.
-- KEYS[1] the topic's meta hash   KEYS[2] its history stream
-- ARGV[1] offset already seen (entries after it are returned)   ARGV[2] at most this many
-- Returns a list: epoch, last offset, oldest offset kept, and the entries as (offset, frame)
-- pairs; or an empty list when the
-- topic has no history (never published, expired or lost).
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return {}
end
local last = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local oldest = last + 1
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then
  oldest = tonumber(string.match(first[1][1], '^(%d+)'))
end
local entries = {}
local after = tonumber(ARGV[1])
if after < last then
  local start = math.max(after + 1, oldest)
  for _, entry in ipairs(redis.call('XRANGE', KEYS[2], start .. '-0', '+', 'COUNT', ARGV[2])) do
    entries[#entries + 1] = {tonumber(string.match(entry[1], '^(%d+)')), entry[2][2]}
  end
end
return {epoch, last, oldest, entries}
