-- Creates the hash KEYS[1] from the field/value pairs in ARGV[3..] unless it exists, expiring after ARGV[1]
-- milliseconds ('0': never), and marks it with this write's id ARGV[2] (field `write_id`).
-- Returns 1 when created — or when it exists because this very write ran before: the cluster client runs a
-- command again when a failover lost its reply, and that second run must not turn a success into "exists" —
-- and 0 when another write created it (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'write_id') == ARGV[2] then
    return 1
  end
  return 0
end
redis.call('HSET', KEYS[1], 'write_id', ARGV[2], unpack(ARGV, 3))
if ARGV[1] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
