-- Records the use of a client assertion (key KEYS[1]) valid until ARGV[1], at ARGV[2] (the caller's clock).
-- Returns 1 when first used (or its earlier record has expired), 0 for a replay. ARGV[3] is a TTL in
-- milliseconds that only collects the record once it cannot matter; the decision uses the caller's clock.
local seen = redis.call('GET', KEYS[1])
if seen and tonumber(seen) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
