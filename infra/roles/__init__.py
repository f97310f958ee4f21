"""Heddle's roles, one module each: `intake` (commands → events), `relay` (store →
`heddle.events`), `worker` (node execution), `projector` (read models) and `timers`
(due timers → `FireTimer`). infra/runtime.py starts the ones a process runs."""
