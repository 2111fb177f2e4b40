-- Records a security event under the next id.
--
-- KEYS: the last id handed out, the events (ZSET: score = id, member = '<id> <event JSON>'); one slot.
-- ARGV: the event JSON.
-- Returns its id.
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, string.format('%d', id) .. ' ' .. ARGV[1])
return id
