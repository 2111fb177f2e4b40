-- Sets the field/value pairs ARGV[3..] on the existing hash KEYS[1], guarded by ARGV[1]:
--   'any'     always;
--   'with'    only when field ARGV[2] is present;
--   'without' only when field ARGV[2] is absent.
-- Returns 1 when updated, 0 when the hash is missing or the guard failed (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local mode = ARGV[1]
if mode ~= 'any' then
  local present = redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1
  if (mode == 'with') ~= present then
    return 0
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 1
