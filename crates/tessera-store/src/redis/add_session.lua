-- Adds session ARGV[1] to the subject's session set KEYS[1], and makes the set live at least ARGV[2] more
-- milliseconds, as long as its longest-lived session: a subject's list goes once all its sessions have.
-- (PTTL is -1 for a set without an expiry yet, so the first session always sets one.)
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
