-- Weight history [D6]: every sample the devices send (stable closed-door readings every
-- 90 s, all samples of a door session), kept 30 days: the evidence behind a charge or a
-- discrepancy. Written in batches off the purchase path; pruned by age.
CREATE TABLE weight_samples (
    cabinet     text    NOT NULL,
    door        integer NOT NULL,
    device_ts   bigint  NOT NULL,
    received_at bigint  NOT NULL,
    stable      boolean NOT NULL,
    msg_id      text    NOT NULL,
    lanes       text    NOT NULL
);
CREATE INDEX weight_samples_door_time ON weight_samples (cabinet, door, device_ts);
CREATE INDEX weight_samples_received ON weight_samples (received_at);
