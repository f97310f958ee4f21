-- The schema as Heddle made it before numbered migrations, one statement that is safe to
-- repeat each: a database made by that code already has all of it, and is recorded at this
-- version without a change; an empty one gets it all. Never edit this file: a change to the
-- schema is a new migration after the last.

-- projection_positions
CREATE TABLE IF NOT EXISTS projection_positions (
    projection text NOT NULL,
    source text NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (projection, source)
);

-- run_history
CREATE TABLE IF NOT EXISTS runs (
    run_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    workflow text NOT NULL,
    workflow_version integer NOT NULL,
    status text NOT NULL,
    input jsonb NOT NULL,
    variables jsonb NOT NULL,
    nodes jsonb NOT NULL,
    node_order jsonb NOT NULL,
    output jsonb,
    error jsonb,
    usage jsonb NOT NULL,
    started_by text NOT NULL,
    command_id text NOT NULL,
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    finished_at timestamptz,
    version integer NOT NULL,
    position bigint NOT NULL
);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_run_id uuid;
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_tenant_time ON runs (tenant, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (tenant, status, started_at DESC);

-- run_timeline
CREATE TABLE IF NOT EXISTS run_timeline (
    run_id uuid NOT NULL,
    version integer NOT NULL,
    position bigint NOT NULL,
    type text NOT NULL,
    node_id text,
    at timestamptz NOT NULL,
    summary text NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (run_id, version)
);

-- definitions
CREATE TABLE IF NOT EXISTS workflow_versions (
    tenant text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    content_hash text NOT NULL,
    spec jsonb NOT NULL,
    published_by text NOT NULL,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

-- tasks
CREATE TABLE IF NOT EXISTS tasks (
    run_id uuid NOT NULL,
    task_id text NOT NULL,
    tenant text NOT NULL,
    type text NOT NULL,
    title text NOT NULL,
    instructions text NOT NULL,
    assignee text,
    role text,
    priority integer NOT NULL,
    value double precision,
    due_at timestamptz,
    form jsonb NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    completed_by text,
    output jsonb,
    version integer NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (tenant, status, created_at);

-- timers
CREATE TABLE IF NOT EXISTS timers (
    run_id uuid NOT NULL,
    timer_id text NOT NULL,
    tenant text NOT NULL,
    purpose text NOT NULL,
    node_id text,
    fire_at timestamptz NOT NULL,
    status text NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (run_id, timer_id)
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (fire_at) WHERE status = 'pending';

-- node_attempts
CREATE TABLE IF NOT EXISTS node_attempts (
    run_id uuid NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    item integer,
    step integer,
    kind text NOT NULL,
    status text NOT NULL,
    request jsonb,
    response text,
    tool_calls jsonb NOT NULL,
    output jsonb,
    provider text,
    model text,
    finish_reason text,
    usage jsonb NOT NULL,
    latency_ms double precision NOT NULL,
    replayed boolean NOT NULL,
    failed_tries integer NOT NULL,
    error jsonb,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    started_position bigint NOT NULL,
    version integer NOT NULL,
    UNIQUE NULLS NOT DISTINCT (run_id, node_id, attempt, item, step)
);
CREATE INDEX IF NOT EXISTS node_attempts_in_order ON node_attempts (run_id, started_position);

-- usage
CREATE TABLE IF NOT EXISTS usage (
    run_id uuid NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    day date NOT NULL,
    tenant text NOT NULL,
    workflow text NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    llm_calls integer NOT NULL,
    cost_complete boolean NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (run_id, provider, model, day)
);
CREATE INDEX IF NOT EXISTS usage_by_tenant_day ON usage (tenant, day);

-- threads
CREATE TABLE IF NOT EXISTS threads (
    thread_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    title text NOT NULL,
    status text NOT NULL,
    outcome text,
    replies text NOT NULL,
    workflow text,
    run_id uuid,
    node_id text,
    attempt integer,
    branches jsonb NOT NULL,
    messages integer NOT NULL,
    pending_replies integer NOT NULL,
    last_error jsonb,
    output jsonb,
    opened_by text NOT NULL,
    opened_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    completed_at timestamptz,
    version integer NOT NULL,
    position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_by_tenant_time
    ON threads (tenant, opened_at DESC, thread_id DESC);
CREATE INDEX IF NOT EXISTS threads_by_run ON threads (run_id);
CREATE TABLE IF NOT EXISTS thread_messages (
    thread_id uuid NOT NULL,
    seq integer NOT NULL,
    message_id text NOT NULL,
    tenant text NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    author text NOT NULL,
    branch text,
    reply_to text,
    provider text,
    model text,
    usage jsonb,
    cost_usd double precision,
    source jsonb,
    posted_at timestamptz NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (thread_id, seq)
);

-- artifacts
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id uuid PRIMARY KEY,
    run_id uuid NOT NULL,
    tenant text NOT NULL,
    workflow text NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    action text NOT NULL,
    name text NOT NULL,
    content_type text NOT NULL,
    size integer NOT NULL,
    sha256 text NOT NULL,
    content text NOT NULL,
    created_at timestamptz NOT NULL,
    position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_by_run ON artifacts (run_id, position);

-- credentials
CREATE TABLE IF NOT EXISTS credentials (
    tenant text NOT NULL,
    id text NOT NULL,
    provider text NOT NULL,
    ciphertext bytea NOT NULL,
    nonce bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);

-- api_keys
CREATE TABLE IF NOT EXISTS api_keys (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    name text,
    scopes text[] NOT NULL,
    digest bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant, created_at);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS roles text[] NOT NULL DEFAULT '{}';

-- documents
CREATE TABLE IF NOT EXISTS documents (
    tenant text NOT NULL,
    document_id text NOT NULL,
    content_type text NOT NULL,
    size integer NOT NULL,
    pages integer,
    content bytea NOT NULL,
    uploaded_by text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, document_id)
);
