-- Forgets revocation log entries recorded before a time, oldest first, at most a number of them; never the newest
-- committed entry (readers detect a log that went back by its head) nor any entry not committed yet.
--
-- KEYS: the entries (ZSET: score = position, member = '<position> <entry JSON>'), the time index (ZSET: score =
--       the highest `at` up to that position, member = the zero-padded position), the revoked access tokens
--       (HASH: jti -> 1), the committed position, all of one partition. One hash tag: one slot (see append.lua).
-- ARGV: the time (milliseconds; entries whose time-index score is below it go), the most entries to forget.
-- Returns how many were forgotten.
--
-- The time index is non-decreasing in position, so its lowest scores are the oldest positions.
local committed = tonumber(redis.call('GET', KEYS[4]) or '0')
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local forgotten = 0
for _, padded in ipairs(old) do
  local position = tonumber(padded)
  if position >= committed then
    break
  end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], position, position)) do
    local entry = cjson.decode(string.sub(member, string.find(member, ' ', 1, true) + 1))
    if entry.kind == 'token' or entry.kind == 'token_by_id' then
      redis.call('HDEL', KEYS[3], entry.value)
    end
    redis.call('ZREM', KEYS[1], member)
  end
  redis.call('ZREM', KEYS[2], padded)
  forgotten = forgotten + 1
end
return forgotten
