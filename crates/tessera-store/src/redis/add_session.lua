-- Adds session ARGV[1] to the subject's sessions KEYS[1] (a sorted set scored by when each may be forgotten,
-- ARGV[3], in the caller's clock), drops the members already forgettable at ARGV[2] (the caller's now), and makes
-- the set live at least ARGV[4] more milliseconds, as long as its longest-lived session: a subject's list holds
-- its recent sessions only, and goes once all of them have. (PTTL is -1 for a set without an expiry yet.)
if redis.call('TYPE', KEYS[1]).ok == 'set' then
  -- A list written before sessions were scored: a plain set. Its sessions are older than this one, so they may
  -- be forgotten no later than it.
  local older = redis.call('SMEMBERS', KEYS[1])
  redis.call('DEL', KEYS[1])
  for _, sid in ipairs(older) do
    redis.call('ZADD', KEYS[1], ARGV[3], sid)
  end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
local ttl = tonumber(ARGV[4])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
