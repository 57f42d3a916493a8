"""Simulated modalities: dcmtk ``storescu`` processes sending studies, one association per study,
retrying what was not acknowledged (as a modality's send queue does) until a deadline.

Acknowledgements are read from storescu's verbose log as it runs: each ``Sending file: PATH`` is
paired with the ``Received Store Response (...)`` that follows; only ``Success`` counts.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.corpus import CorpusInstance, CorpusStudy

STORESCU = "/usr/bin/storescu"  # dcmtk's; the venv's pynetdicom has a same-named app


@dataclass
class Ledger:
    """What the modalities did: first-send and first-acknowledgement times per SOP Instance UID."""

    sent: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)  # response text -> count
    associations: int = 0
    association_failures: int = 0
    gave_up: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_refusal(self, text: str) -> None:
        with self.lock:
            self.refusals[text] = self.refusals.get(text, 0) + 1


class Modality(threading.Thread):
    def __init__(
        self,
        name: str,
        port: int,
        studies: list[CorpusStudy],
        ledger: Ledger,
        *,
        deadline: float,
        log_dir: Path,
        pause: float = 0.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.aet = name.upper()[:16]
        self.port = port
        self.studies = studies
        self.ledger = ledger
        self.deadline = deadline
        self.pause = pause
        self.log = (log_dir / f"{name}.log").open("a")
        self.done = threading.Event()

    def run(self) -> None:
        try:
            for study in self.studies:
                self._send_study(study)
                if self.pause:
                    time.sleep(self.pause)
        finally:
            self.log.close()
            self.done.set()

    def _send_study(self, study: CorpusStudy) -> None:
        backoff = 0.5
        pending = list(study.instances)
        while pending:
            if time.monotonic() > self.deadline:
                with self.ledger.lock:
                    self.ledger.gave_up |= {i.sop_instance_uid for i in pending}
                return
            acked = self._associate(pending)
            pending = [i for i in pending if i.sop_instance_uid not in acked]
            if pending:
                time.sleep(backoff)
                backoff = min(backoff * 2, 4.0)

    def _associate(self, instances: list[CorpusInstance]) -> set[str]:
        by_path = {str(i.path): i for i in instances}
        cmd = [STORESCU, "-v", "-R", "-aet", self.aet, "-aec", "XRAYGATE"]
        cmd += ["-to", "10", "-ta", "10", "-td", "60", "127.0.0.1", str(self.port)]
        cmd += [str(i.path) for i in instances]
        env = {**os.environ, "TCP_NODELAY": "1"}
        acked: set[str] = set()
        current: CorpusInstance | None = None
        with self.ledger.lock:
            self.ledger.associations += 1
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.monotonic()
            self.log.write(line)
            if "Sending file: " in line:
                current = by_path.get(line.split("Sending file: ", 1)[1].strip())
                if current is not None:
                    with self.ledger.lock:
                        self.ledger.sent.setdefault(current.sop_instance_uid, now)
            elif "Received Store Response" in line and current is not None:
                status = line.split("Received Store Response", 1)[1].strip()
                if status.startswith("(Success"):
                    acked.add(current.sop_instance_uid)
                    with self.ledger.lock:
                        self.ledger.acked.setdefault(current.sop_instance_uid, now)
                else:
                    self.ledger.count_refusal(status[:80])
                current = None
        if proc.wait() != 0 or len(acked) < len(instances):
            with self.ledger.lock:
                self.ledger.association_failures += 1
        return acked
