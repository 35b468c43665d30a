\set from random(1, 100)
\set to 1 + (:from + random(0, 98)) % 100
\set key random(1, 1000000000)
BEGIN;
SELECT id, from_account, to_account, amount, idempotency_key, created_at FROM tw_probe.transfers WHERE idempotency_key = 'k' || :key || '-' || :client_id;
SELECT id, balance FROM tw_probe.accounts WHERE id = ANY(ARRAY[:from, :to]::bigint[]) ORDER BY id FOR UPDATE;
INSERT INTO tw_probe.transfers (from_account, to_account, amount, idempotency_key, created_at) VALUES (:from, :to, 1, 'k' || :key || '-' || :client_id, 0) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id;
UPDATE tw_probe.accounts SET balance = balance - 1 WHERE id = :from;
INSERT INTO tw_probe.ledger_entries (transfer_id, account_id, amount, balance_after, created_at) VALUES (currval('tw_probe.transfers_id_seq'), :from, -1, 0, 0);
UPDATE tw_probe.accounts SET balance = balance + 1 WHERE id = :to;
INSERT INTO tw_probe.ledger_entries (transfer_id, account_id, amount, balance_after, created_at) VALUES (currval('tw_probe.transfers_id_seq'), :to, 1, 0, 0);
COMMIT;
