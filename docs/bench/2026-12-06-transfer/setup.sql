DROP SCHEMA IF EXISTS tw_probe CASCADE;
CREATE SCHEMA tw_probe;
SET search_path = tw_probe;
\i /work/main/crates/tidewater-cli/migrations/postgres/0001_accounts_transfers_ledger.sql
INSERT INTO accounts (name, balance, created_at) SELECT 'a' || i, 1000000000, 0 FROM generate_series(1, 100) i;
