-- Writes document KEYS[1] (a hash: version, contents) with contents ARGV[2] if its version is ARGV[1], or, when
-- ARGV[1] is '', only if it does not exist. Returns 1 when written, 0 when another writer got there first.
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if current then
    return 0
  end
  redis.call('HSET', KEYS[1], 'version', '1', 'contents', ARGV[2])
  return 1
end
if current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'version', tostring(tonumber(current) + 1), 'contents', ARGV[2])
return 1
