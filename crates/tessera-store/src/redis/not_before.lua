-- Moves the subject's "not before" instant (field not_before of hash KEYS[1]) forward to ARGV[1]; never back.
-- Returns 1 when it moved, 0 otherwise.
local current = redis.call('HGET', KEYS[1], 'not_before')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'not_before', ARGV[1])
return 1
