-- Schedules and what each tick did (issue 19).
CREATE TABLE schedules (
    schedule_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    workflow text NOT NULL,
    spec jsonb NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    fires_after timestamptz NOT NULL,
    next_fire_at timestamptz,
    last_tick timestamptz,
    last_run_id uuid,
    fired integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    version integer NOT NULL
);
CREATE UNIQUE INDEX schedules_by_name ON schedules (tenant, name);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE status = 'active';
CREATE TABLE schedule_fires (
    schedule_id uuid NOT NULL,
    tick timestamptz NOT NULL,
    run_id uuid,
    reason text,
    PRIMARY KEY (schedule_id, tick)
);
