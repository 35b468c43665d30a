\set m random(1, 100)
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('tidewater-fleet:' || 'bench', 0));
DELETE FROM tidewater_fleet_bench WHERE fleet = 'bench' AND heartbeat < now() - make_interval(secs => 3600);
INSERT INTO tidewater_fleet_bench (fleet, member, grant_size, demand, ceiling, heartbeat) VALUES ('bench', lpad(to_hex(:m::int), 12, '0'), 4, 3, 50, now()) ON CONFLICT (fleet, member) DO UPDATE SET demand = EXCLUDED.demand, ceiling = EXCLUDED.ceiling, heartbeat = now();
SELECT member, grant_size, demand, ceiling, extract(epoch FROM now() - heartbeat)::float8 FROM tidewater_fleet_bench WHERE fleet = 'bench' ORDER BY member;
SELECT coalesce(application_name, ''), count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1;
SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int + coalesce(current_setting('reserved_connections', true)::int, 0);
UPDATE tidewater_fleet_bench SET grant_size = 4 WHERE fleet = 'bench' AND member = lpad(to_hex(:m::int), 12, '0');
COMMIT;
