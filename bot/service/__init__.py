"""The trigger side of the unattended service: HTTP app, webhook, chat commands, scheduler,
work queue, per-repository locks and metrics."""
