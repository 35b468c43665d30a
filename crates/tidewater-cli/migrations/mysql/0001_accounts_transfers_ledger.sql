-- Accounts with balances (in cents), transfers between them, and the
-- ledger: one debit and one credit entry per transfer. MySQL commits each
-- DDL statement by itself: every statement here can run again
-- (IF NOT EXISTS), so a start interrupted half-way finishes the job.
CREATE TABLE IF NOT EXISTS accounts (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    balance BIGINT NOT NULL CHECK (balance >= 0),
    created_at BIGINT NOT NULL
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS transfers (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    from_account BIGINT NOT NULL,
    to_account BIGINT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    idempotency_key VARCHAR(255) NULL UNIQUE,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (from_account) REFERENCES accounts (id),
    FOREIGN KEY (to_account) REFERENCES accounts (id)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS ledger_entries (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    transfer_id BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (transfer_id) REFERENCES transfers (id),
    FOREIGN KEY (account_id) REFERENCES accounts (id),
    INDEX ledger_entries_by_account (account_id, id)
) ENGINE = InnoDB;
