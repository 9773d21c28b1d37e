"""Background work on a task queue (Huey): embedded SQLite by default, Redis with `lib.cli worker` processes at scale.

Owns the queue and its consumers (lib.jobs.queue), the per-item job records with progress, heartbeat, cancel and
retry (lib.jobs.items), provider concurrency and rate limits for queued work (lib.jobs.limits), and the scheduled
housekeeping (lib.jobs.housekeeping). The queue carries only item ids; the state lives in the database.
Imports lib.core and lib.gateway only; the capabilities above register their task handlers on a WorkQueue.
"""
