-- Acme's double-entry ledger: accounts, and entries that move an amount from one account to another.
CREATE TABLE accounts (
    id        bigserial   PRIMARY KEY,
    code      text        NOT NULL UNIQUE CHECK (code ~ '^[0-9]{4}$'),
    title     text        NOT NULL,
    kind      text        NOT NULL CHECK (kind IN ('asset', 'liability', 'equity', 'income', 'expense')),
    opened_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE entries (
    id             bigserial   PRIMARY KEY,
    debit_account  bigint      NOT NULL REFERENCES accounts (id),
    credit_account bigint      NOT NULL REFERENCES accounts (id),
    amount_cents   bigint      NOT NULL CHECK (amount_cents > 0),
    currency       char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    memo           text,
    booked_at      timestamptz NOT NULL DEFAULT now(),
    -- An entry moves money between two different accounts.
    CONSTRAINT entries_two_accounts CHECK (debit_account <> credit_account)
);
CREATE INDEX entries_booked_at ON entries (booked_at);

-- The chart of accounts every environment starts with.
INSERT INTO accounts (code, title, kind) VALUES
    ('1000', 'Cash', 'asset'),
    ('2000', 'Customer deposits', 'liability'),
    ('4000', 'Storefront sales', 'income');
