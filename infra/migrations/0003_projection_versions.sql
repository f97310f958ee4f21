-- The `VERSION` of each projection's code that built its rows: a projection whose code
-- has another is rebuilt at the next start (infra/projector.rebuild_changed).
CREATE TABLE projection_versions (
    projection text PRIMARY KEY,
    version integer NOT NULL
);
