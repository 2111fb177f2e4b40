-- Marks the session (refresh-token family) in hash KEYS[1] revoked at ARGV[1] for reason ARGV[2], unless it is
-- revoked already (sticky: the first revocation's time and reason stay).
-- Returns {changed (1/0), HGETALL of the family} (an empty list for an unknown family).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, {}}
end
local changed = 0
if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 0 then
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1], 'revoked_reason', ARGV[2])
  changed = 1
end
return {changed, redis.call('HGETALL', KEYS[1])}
