-- Moves the security events kept before they had ids (a LIST, newest first) into the sorted set by id, oldest
-- first, so they keep their order and read like every later event. Idempotent: the list is gone afterwards.
--
-- KEYS: the old list, the last id handed out, the events (ZSET); one slot.
-- Returns how many events moved.
local old = redis.call('LRANGE', KEYS[1], 0, -1)
for i = #old, 1, -1 do
  local id = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[3], id, string.format('%d', id) .. ' ' .. old[i])
end
redis.call('DEL', KEYS[1])
return #old
