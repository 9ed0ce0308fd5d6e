-- Orders of the reference platform. `seq` orders the listing (cursor pagination); `id` is public.
CREATE TABLE orders (
    seq             bigserial   NOT NULL UNIQUE,
    id              uuid        PRIMARY KEY,
    customer_id     text        NOT NULL,
    currency        text        NOT NULL,
    items           jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'fulfilled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    fulfilled_at    timestamptz,
    -- A create retried with the same Idempotency-Key returns this order; the body must be the same.
    idempotency_key text        UNIQUE,
    request_sha256  text
);
