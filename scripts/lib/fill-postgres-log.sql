-- Fills a Tessera PostgreSQL database's revocation log up to 1,000,000 live entries in one statement, for
-- `tessera-bench restart --already-filled` (filling through the store API takes a quarter of an hour):
--   psql "$URL" -f scripts/lib/fill-postgres-log.sql
-- The mix is the benchmark's: 70% token ids (expiring in an hour), 20% sessions, 10% subjects (instants a second
-- ago). The database must have been migrated (start `tessera serve` on it once).
INSERT INTO revocation_log (at, kind, value, instant, actor, reason)
SELECT now_ms,
       CASE WHEN g % 10 < 7 THEN 'token' WHEN g % 10 < 9 THEN 'session' ELSE 'subject' END,
       'fill-' || g,
       CASE WHEN g % 10 < 7 THEN now_ms + 3600000 WHEN g % 10 < 9 THEN NULL ELSE now_ms - 1000 END,
       'bench', 'restart benchmark (SQL fill)'
FROM generate_series(1, 1000000 - (SELECT count(*) FROM revocation_log)) AS g,
     (SELECT (extract(epoch FROM now()) * 1000)::bigint AS now_ms) AS clock;
