-- The work queue's pages of done tasks (completed, cancelled, skipped): newest first.
CREATE INDEX tasks_done_by_time ON tasks (tenant, status, updated_at DESC, run_id DESC, task_id DESC)
    WHERE status <> 'open';
