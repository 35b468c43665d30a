DROP TABLE IF EXISTS tidewater_fleet_bench;
CREATE TABLE tidewater_fleet_bench (fleet text NOT NULL, member text NOT NULL, grant_size integer NOT NULL, demand integer NOT NULL, ceiling integer NOT NULL, heartbeat timestamptz NOT NULL, PRIMARY KEY (fleet, member));
INSERT INTO tidewater_fleet_bench SELECT 'bench', lpad(to_hex(i), 12, '0'), 4, 2, 50, now() FROM generate_series(1, 100) i;
