"""The periodic ``model-sync`` job: pull signed releases from the model source, then apply the
promotion rule.

It runs when ``XRAYGATE_MODEL_SOURCE_URL`` is set or ``XRAYGATE_MODEL_AUTO_PROMOTE`` is on. Jobs
are keyed by time slot (:class:`~xraygate.core.jobs.ModelSyncPayload`, one slot per
``XRAYGATE_MODEL_PULL_INTERVAL_SECONDS``), so any number of workers schedule each slot once; a
job first schedules the next slot in its own transaction, so a failing source (retried, then
dead-lettered) does not stop later pulls.
"""

from __future__ import annotations

import logging
import math
import time

from xraygate.core.config import Settings
from xraygate.core.db import write_session
from xraygate.core.jobs import ModelSyncPayload
from xraygate.core.quality.promotion import promote, verdicts
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.storage import ObjectStore
from xraygate.core.worker import Commit
from xraygate.inference.distribution import pull

log = logging.getLogger(__name__)


def enabled(settings: Settings) -> bool:
    return bool(settings.model_source_url) or settings.model_auto_promote


def schedule(queue: JobQueue, settings: Settings, *, next_slot: bool = False) -> None:
    """Enqueue the job of the current (or next) slot; a no-op when it exists."""
    interval = max(1.0, settings.model_pull_interval_seconds)
    now = time.time()
    slot = math.floor(now / interval) + (1 if next_slot else 0)
    delay = max(0.0, slot * interval - now) if next_slot else 0.0
    with write_session(queue.engine) as session:
        queue.put(session, ModelSyncPayload(slot), delay_seconds=delay)


class ModelSyncHandler:
    def __init__(self, settings: Settings, store: ObjectStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue

    def __call__(self, job: ClaimedJob) -> Commit | None:
        ModelSyncPayload.from_job(job)  # a job of this kind, with a slot
        schedule(self.queue, self.settings, next_slot=True)
        actor = f"worker:{job.worker_id}"
        engine = self.queue.engine
        if self.settings.model_source_url:
            url = self.settings.model_source_url
            for outcome in pull(self.settings, engine, self.store, url, actor=actor, via="job"):
                if outcome.status != "present":
                    log.info("model pull %s: %s", outcome.model, outcome.status)
        if self.settings.model_auto_promote:
            passing = [
                v
                for v in verdicts(
                    engine, self.settings.model_promote_min_paired, self.settings.model_policy
                )
                if v.promote
            ]
            if passing:
                best = max(passing, key=lambda v: (v.sensitivity[1] or 0.0, v.agreement[1] or 0.0))
                promote(engine, best, actor=actor, via="job")
                log.info("promoted %s over %s: %s", best.candidate, best.baseline, best.reason)
        return None
