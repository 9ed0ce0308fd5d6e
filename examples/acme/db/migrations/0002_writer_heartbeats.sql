-- The ledger writer's liveness: each of its tasks records a heartbeat when it starts and every few seconds.
CREATE TABLE writer_heartbeats (
    id       bigserial   PRIMARY KEY,
    task_id  text        NOT NULL,
    revision text        NOT NULL,
    beat_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX writer_heartbeats_task ON writer_heartbeats (task_id, beat_at);
