-- The customer-success pack: customers, their queue items and snoozes, playbooks (issue 17).

CREATE TABLE customers (
    aggregate_id uuid NOT NULL UNIQUE,
    tenant text NOT NULL,
    customer_id text NOT NULL,
    name text NOT NULL,
    domain text,
    owner text,
    segment text,
    arr double precision,
    renewal_date date,
    health double precision,
    risk double precision,
    opportunity double precision,
    profile jsonb NOT NULL,
    signals jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version integer NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
CREATE INDEX customers_by_name ON customers (tenant, name, customer_id);
CREATE INDEX customers_by_owner ON customers (tenant, owner);
CREATE INDEX customers_by_renewal ON customers (tenant, renewal_date);

CREATE TABLE queue_snoozes (
    item_id uuid PRIMARY KEY,
    aggregate_id uuid NOT NULL,
    until timestamptz NOT NULL,
    snoozed_by text NOT NULL,
    version integer NOT NULL
);
CREATE TABLE queue_customers (
    aggregate_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    assignee text,
    playbooks jsonb NOT NULL,
    evaluated_at timestamptz NOT NULL,
    version integer NOT NULL
);
CREATE TABLE queue_items (
    item_id uuid PRIMARY KEY,
    aggregate_id uuid NOT NULL,
    tenant text NOT NULL,
    customer_id text NOT NULL,
    assignee text,
    playbook text NOT NULL,
    rule text NOT NULL,
    workflow text NOT NULL,
    stage text NOT NULL,
    score double precision NOT NULL,
    terms jsonb NOT NULL,
    recommended_at timestamptz NOT NULL,
    evaluated_at timestamptz NOT NULL,
    version integer NOT NULL
);
CREATE INDEX queue_items_by_assignee
    ON queue_items (tenant, assignee, score DESC, item_id);
CREATE INDEX queue_items_by_customer ON queue_items (aggregate_id);

CREATE TABLE playbook_versions (
    tenant text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    content_hash text NOT NULL,
    spec jsonb NOT NULL,
    published_by text NOT NULL,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

-- Runs bound to a customer and a person (started from a queue).
ALTER TABLE runs ADD COLUMN customer_id text;
ALTER TABLE runs ADD COLUMN assignee text;
ALTER TABLE runs ADD COLUMN priority double precision;
CREATE INDEX runs_by_customer ON runs (tenant, customer_id, workflow) WHERE customer_id IS NOT NULL;
CREATE INDEX runs_by_assignee ON runs (tenant, assignee) WHERE assignee IS NOT NULL;
