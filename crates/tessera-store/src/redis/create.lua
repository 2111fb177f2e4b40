-- Creates the hash KEYS[1] from the field/value pairs in ARGV unless it exists.
-- Returns 1 when created, 0 when it existed (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
