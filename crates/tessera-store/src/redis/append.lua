-- Appends entries to one partition of the revocation log, and optionally a security event (partition 0 only, where
-- the events live). Readers do not see them yet: the caller publishes them with commit.lua once replicas have
-- acknowledged them (see RedisStore::append_to).
--
-- KEYS: the partition's position counter, its entries (ZSET: score = position, member = '<position> <entry JSON>'),
--       its time index (ZSET: score = the highest `at` up to that position, member = the position zero-padded to
--       20 digits, so equal scores sort by position), its highest `at` so far, its revoked access tokens (HASH:
--       jti -> 1, what compact mode confirms its positives with); with an event, then the last security-event id
--       handed out and the security events (ZSET: score = id, member = '<id> <event JSON>'). All under one hash
--       tag: one slot, so positions are gap-free and in commit order, and a token is found revoked exactly when
--       its entry exists.
-- ARGV: security event JSON ('' for none), then for each entry: at, entry JSON, the revoked token's jti ('' when
--       the entry revokes something else).
-- Returns the last new position.
--
-- The time index is non-decreasing in position, so the first position whose score is >= `since` bounds from
-- below every entry recorded at or after `since`, whatever order the nodes' clocks put them in.
local id = 0
local highest = redis.call('GET', KEYS[4])
for i = 2, #ARGV, 3 do
  id = redis.call('INCR', KEYS[1])
  local position = string.format('%d', id)
  redis.call('ZADD', KEYS[2], position, position .. ' ' .. ARGV[i + 1])
  if ARGV[i + 2] ~= '' then
    redis.call('HSET', KEYS[5], ARGV[i + 2], 1)
  end
  if not highest or tonumber(ARGV[i]) > tonumber(highest) then
    highest = ARGV[i]
  end
  redis.call('ZADD', KEYS[3], highest, string.format('%020d', id))
end
if highest then
  redis.call('SET', KEYS[4], highest)
end
if ARGV[1] ~= '' then
  local event = redis.call('INCR', KEYS[6])
  redis.call('ZADD', KEYS[7], event, string.format('%d', event) .. ' ' .. ARGV[1])
end
return id
