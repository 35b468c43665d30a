-- Balances and amounts stay within the documented range: at most
-- 2^53 - 1 cents (9007199254740991), the largest integer every JSON reader
-- keeps exact (`store::MAX_AMOUNT`). The service refuses a transfer that
-- would take a balance past it; these make it impossible in the schema too.
-- SQLite cannot add a CHECK to an existing table without rebuilding it
-- (and the tables referencing it, with foreign keys off, which cannot be
-- switched inside the migration's transaction): triggers do the same job,
-- on a new database and on one created by an earlier version alike.
CREATE TRIGGER accounts_balance_max_insert BEFORE INSERT ON accounts
WHEN NEW.balance > 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: accounts_balance_max');
END;

CREATE TRIGGER accounts_balance_max_update BEFORE UPDATE OF balance ON accounts
WHEN NEW.balance > 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: accounts_balance_max');
END;

CREATE TRIGGER transfers_amount_max_insert BEFORE INSERT ON transfers
WHEN NEW.amount > 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: transfers_amount_max');
END;

CREATE TRIGGER transfers_amount_max_update BEFORE UPDATE OF amount ON transfers
WHEN NEW.amount > 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: transfers_amount_max');
END;

-- The rows already there, checked as PostgreSQL and MariaDB check them
-- when a constraint is added: one past the limit fails the migration.
UPDATE accounts SET balance = balance WHERE balance > 9007199254740991;
UPDATE transfers SET amount = amount WHERE amount > 9007199254740991;
