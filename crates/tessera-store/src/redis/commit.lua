-- Makes the log visible to readers up to position ARGV[1] (acknowledged by the replicas), then tells every node.
--
-- KEYS: the committed position. ARGV: the position, the notification channel.
--
-- Readers read only up to the committed position, so no reader ever applies an entry a failover can still lose:
-- if it is lost, the next append reuses its position, and a reader that had seen it would skip the new entry.
-- The committed position only moves forward; if a failover loses its latest value, the entries it covered were
-- replicated anyway (they were acknowledged), and the next commit moves it past them again.
local committed = tonumber(redis.call('GET', KEYS[1]) or '0')
local position = tonumber(ARGV[1])
if position > committed then
  redis.call('SET', KEYS[1], ARGV[1])
  committed = position
end
redis.call('PUBLISH', ARGV[2], string.format('%d', committed))
return committed
