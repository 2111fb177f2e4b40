-- Creates the hash KEYS[1] from the field/value pairs in ARGV[2..] unless it exists, expiring after ARGV[1]
-- milliseconds ('0': never).
-- Returns 1 when created, 0 when it existed (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
