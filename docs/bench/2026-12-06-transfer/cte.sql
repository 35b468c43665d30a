\set from random(1, 100)
\set to 1 + (:from + random(0, 98)) % 100
\set key random(1, 1000000000)
BEGIN;
SELECT id, from_account, to_account, amount, idempotency_key, created_at FROM tw_probe.transfers WHERE idempotency_key = 'k' || :key || '-' || :client_id;
SELECT id, balance FROM tw_probe.accounts WHERE id = ANY(ARRAY[:from, :to]::bigint[]) ORDER BY id FOR UPDATE;
WITH claimed AS (INSERT INTO tw_probe.transfers (from_account, to_account, amount, idempotency_key, created_at) VALUES (:from, :to, 1, 'k' || :key || '-' || :client_id, 0) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), posted AS (UPDATE tw_probe.accounts SET balance = CASE accounts.id WHEN :from THEN balance - 1 ELSE balance + 1 END FROM claimed WHERE accounts.id IN (:from, :to)), ledger AS (INSERT INTO tw_probe.ledger_entries (transfer_id, account_id, amount, balance_after, created_at) SELECT claimed.id, p.account, p.change, p.after, 0 FROM claimed, (VALUES (:from::bigint, -1::bigint, 0::bigint), (:to, 1, 0)) AS p(account, change, after)) SELECT id FROM claimed;
COMMIT;
