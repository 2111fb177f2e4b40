-- Presents generation ARGV[1] of the session (refresh-token family) in hash KEYS[1]: the port of
-- tessera_store::decide, applied atomically on the family's slot. Keep the two in step, check for check and in
-- the same order (the tests compare them case by case).
--
-- ARGV: presented, now, grace_ms, idle_timeout_ms, the subject's not_before ('' for none), disabled ('1'/'0').
-- The subject's state lives in other slots: the caller reads it just before (see RedisStore::refresh).
--
-- Returns {'refused', reason} (nothing changed; reason is a tessera_model::Refusal name, a test pins them), or
-- {'rotated' | 'replayed' | 'theft', HGETALL of the family}.
-- Theft writes nothing here: the caller logs the revocation first, then marks the family revoked, so the family
-- is never revoked without its log entry.
--
-- Lua numbers are doubles: every comparison is exact for values below 2^53 (milliseconds until the year 287,396;
-- generations beyond any use), and the stored values are written from ARGV strings or HINCRBY, never formatted.
local family = KEYS[1]
local presented, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local grace_ms, idle_timeout_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local not_before = tonumber(ARGV[5])
local disabled = ARGV[6] == '1'

local state = redis.call('HMGET', family, 'generation', 'revoked_at', 'expires_at', 'created_at', 'last_used_at',
  'generation_issued_at')
if not state[1] then
  return {'refused', 'unknown'}
end
local live = tonumber(state[1])

if state[2] then
  return {'refused', 'revoked'}
end
if now >= tonumber(state[3]) then
  return {'refused', 'expired'}
end
if not_before and tonumber(state[4]) <= not_before then
  return {'refused', 'logged_out_everywhere'}
end
if disabled then
  return {'refused', 'user_disabled'}
end
if presented == live then
  if now - tonumber(state[5]) >= idle_timeout_ms then
    return {'refused', 'idle'}
  end
  redis.call('HINCRBY', family, 'generation', 1)
  redis.call('HSET', family, 'generation_issued_at', ARGV[2], 'last_used_at', ARGV[2])
  return {'rotated', redis.call('HGETALL', family)}
end
if presented + 1 == live and now - tonumber(state[6]) < grace_ms then
  return {'replayed', redis.call('HGETALL', family)}
end
if presented < live then
  return {'theft', redis.call('HGETALL', family)}
end
return {'refused', 'unknown'}
