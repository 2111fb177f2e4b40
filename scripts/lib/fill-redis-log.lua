-- Fills a Tessera Redis store's revocation log with COUNT live entries, as append.lua + commit.lua would leave
-- them (crates/tessera-store/src/redis/), for `tessera-bench restart --already-filled` (filling through the
-- store API takes minutes). On an empty Redis (or the Cluster master of the {tessera-log} slot):
--   redis-cli -p PORT --eval scripts/lib/fill-redis-log.lua 'tessera:{tessera-log}:seq' \
--     'tessera:{tessera-log}:entries' 'tessera:{tessera-log}:by-time' 'tessera:{tessera-log}:committed' \
--     'tessera:{tessera-log}:highest-at' , 1000000 "$(date +%s%3N)"
-- The mix is the benchmark's: 70% token ids (expiring in an hour), 20% sessions, 10% subjects.
-- ARGV: count, now (ms).
local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, n do
  local kind, instant
  local m = i % 10
  if m < 7 then kind = 'token'; instant = now + 3600000
  elseif m < 9 then kind = 'session'; instant = cjson.null
  else kind = 'subject'; instant = now - 1000 end
  local entry = cjson.encode({at = now, kind = kind, value = 'fill-' .. i, instant = instant, actor = 'bench', reason = 'restart benchmark (Lua fill)'})
  local position = string.format('%d', i)
  redis.call('ZADD', KEYS[2], position, position .. ' ' .. entry)
  redis.call('ZADD', KEYS[3], now, string.format('%020d', i))
end
redis.call('SET', KEYS[1], n)
redis.call('SET', KEYS[4], n)
redis.call('SET', KEYS[5], now)
return n
