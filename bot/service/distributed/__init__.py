"""The distributed mode: web, scheduler and worker roles on PostgreSQL with procrastinate.

`fleet` (the queue: jobs, locks, priorities, cron-slot de-duplication), `worker` (running
rotations, retries, stalled-job recovery), `leader` (one active scheduler), `shared` (the
packument cache and the GitHub request budget), `roles` (`serve --role`), `migrate`.
"""
