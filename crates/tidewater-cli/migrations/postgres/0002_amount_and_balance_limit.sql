-- Balances and amounts stay within the documented range: at most
-- 2^53 - 1 cents (9007199254740991), the largest integer every JSON reader
-- keeps exact (`store::MAX_AMOUNT`). The service refuses a transfer that
-- would take a balance past it; these make it impossible in the schema too.
-- Adding a constraint checks the rows already there: a database holding a
-- balance past the limit fails this migration, naming the constraint.
ALTER TABLE accounts ADD CONSTRAINT accounts_balance_max CHECK (balance <= 9007199254740991);

ALTER TABLE transfers ADD CONSTRAINT transfers_amount_max CHECK (amount <= 9007199254740991);
