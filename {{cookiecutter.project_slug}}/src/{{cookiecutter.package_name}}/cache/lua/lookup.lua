-- Look up one cached variant; on a miss (or a stale entry) try to become the caller
-- that computes it. One round trip whatever the outcome.
--
-- KEYS[1] namespace version   KEYS[2] entry (a hash of variants)   KEYS[3] this variant's lock
-- ARGV[1] variant             ARGV[2] lock token                    ARGV[3] lock TTL (ms)
-- ARGV[4] '1' to take the lock on a miss, '0' not to (HEAD)
-- ARGV[5] '1' to ignore the stored entry (a request with Cache-Control: no-cache)
-- ARGV[6] a fresh namespace version, used only if the namespace has none yet
-- ARGV[7..] entity tags the client already holds (If-None-Match), '*' for any
--
-- Returns {outcome, version, now_ms, etag, fresh_ms_left, age_ms, body, headers, status};
-- on a match, {outcome, version, now_ms, etag, fresh_ms_left, age_ms, nil, headers}: a 304
-- carries the stored Vary header, not the body
-- outcome: hit | stale | refresh (stale, and this caller refreshes) | hit-match | stale-match
--          | miss-lock (this caller computes) | miss-wait (someone else computes)
--          | miss (no lock wanted)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Versions are random, not counters: if the version key is ever evicted, entries
-- written under an older version can never match again.
local version = redis.call('GET', KEYS[1])
if not version then
  version = ARGV[6]
  redis.call('SET', KEYS[1], version)
end

local v = ARGV[1]
local entry = redis.call('HMGET', KEYS[2], v .. '|n', v .. '|f', v .. '|x', v .. '|a', v .. '|t')
if ARGV[5] ~= '1' and entry[1] == version and tonumber(entry[3]) > now then
  local fresh_until = tonumber(entry[2])
  local outcome = 'hit'
  if fresh_until <= now then
    outcome = 'stale'
    if ARGV[4] == '1' and redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
      outcome = 'refresh'
    end
  end
  local fresh_left = math.max(fresh_until - now, 0)
  local age = now - tonumber(entry[4])
  if outcome ~= 'refresh' then
    for i = 7, #ARGV do
      if ARGV[i] == '*' or ARGV[i] == entry[5] then
        local headers = redis.call('HGET', KEYS[2], v .. '|h')
        return {outcome .. '-match', version, now, entry[5], fresh_left, age, false, headers}
      end
    end
  end
  local payload = redis.call('HMGET', KEYS[2], v .. '|b', v .. '|h', v .. '|s')
  return {outcome, version, now, entry[5], fresh_left, age, payload[1], payload[2], payload[3]}
end

if ARGV[4] ~= '1' then
  return {'miss', version, now}
end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'miss-lock', version, now}
end
return {'miss-wait', version, now}
