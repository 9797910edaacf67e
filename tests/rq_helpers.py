"""Running the RQ queue in a test: a burst SimpleWorker in this process, and scheduled retries made due."""

from __future__ import annotations

import time

from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry

from chatbot.store.jobs import job_queue


def run_jobs(client) -> None:
    """Run every queued job to the end, in this process (what `python -m chatbot webhook-worker` does)."""
    SimpleWorker([job_queue(client)], connection=client).work(burst=True)


def make_due(client) -> list[float]:
    """Move every scheduled job to the queue now, as if its time had come; returns each one's delay in seconds."""
    queue = job_queue(client)
    registry = ScheduledJobRegistry(queue=queue)
    delays = []
    for job_id in registry.get_job_ids():
        delays.append(registry.get_scheduled_time(job_id).timestamp() - time.time())
        registry.requeue(job_id)
    return delays
