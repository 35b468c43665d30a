-- Accounts with balances (in cents), transfers between them, and the
-- ledger: one debit and one credit entry per transfer.
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    created_at INTEGER NOT NULL
);

CREATE TABLE transfers (
    id INTEGER PRIMARY KEY,
    from_account INTEGER NOT NULL REFERENCES accounts (id),
    to_account INTEGER NOT NULL REFERENCES accounts (id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    idempotency_key TEXT UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY,
    transfer_id INTEGER NOT NULL REFERENCES transfers (id),
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id, id);
