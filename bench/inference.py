"""Inference benchmark on CPU: preprocessing and model throughput/latency at batch 1 and 16,
the saliency map's cost against the forward pass it follows (Grad-CAM: one more forward and a
backward pass), and the time from C-STORE acknowledgement to a stored result for one RG1 image.

The peer measured in the same run is pydicom's own decode of the same file (``pixel_array``):
the ratio shows what xraygate's preprocessing costs on top of decoding.

    .venv/bin/python bench/inference.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RG1 = Path(get_testdata_file("RG1_UNCR.dcm"))
REPEAT = 48


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def report(label: str, seconds: list[float], images_per_call: int) -> float:
    rate = images_per_call * len(seconds) / sum(seconds)
    per_image = statistics.median(seconds) / images_per_call * 1e3
    print(f"{label:<44} {rate:8.1f} img/s  {per_image:7.2f} ms/img (median)")
    return rate


def main() -> None:
    from xraygate.inference import runtime, saliency
    from xraygate.inference.manifest import load_manifest
    from xraygate.inference.preprocess import preprocess, read_dataset
    from xraygate.inference.registry import DEMO_DIR

    manifest = load_manifest(DEMO_DIR / "manifest.json")
    model = runtime.load(DEMO_DIR / manifest.artifact, manifest)
    data = RG1.read_bytes()
    print(f"RG1_UNCR.dcm: {len(data) / 2**20:.1f} MB, model {manifest.label} (demo)")

    peer = report(
        "peer: pydicom decode only (pixel_array)",
        timed(lambda: dcmread(RG1).pixel_array, REPEAT),
        1,
    )
    prep = report(
        "preprocess (parse+decode+resize+window)",
        timed(lambda: preprocess(read_dataset(data), manifest.input), REPEAT),
        1,
    )
    print(f"{'ratio preprocess / decode-only throughput':<44} {prep / peer:8.2f}")
    one = preprocess(read_dataset(data), manifest.input)[None]
    sixteen = np.repeat(one, 16, axis=0)
    report("model, batch 1", timed(lambda: model.predict(one), REPEAT), 1)
    scored = report("model, batch 16", timed(lambda: model.predict(sixteen), REPEAT // 4), 16)
    salient = report(
        "saliency map (Grad-CAM), batch 16", timed(lambda: model.saliency(sixteen), REPEAT // 4), 16
    )
    print(f"{'ratio saliency / model throughput':<44} {salient / scored:8.2f}")

    def full_batch() -> None:
        batch = np.stack([preprocess(read_dataset(data), manifest.input) for _ in range(16)])
        model.predict(batch)

    rate = report("decode+preprocess+model, batch 16", timed(full_batch, 6), 16)

    def with_saliency() -> None:
        batch = np.stack([preprocess(read_dataset(data), manifest.input) for _ in range(16)])
        model.predict(batch)
        for values in model.saliency(batch):
            saliency.to_png(values)

    both = report("... + saliency maps as PNG, batch 16", timed(with_saliency, 6), 16)
    print(f"{'ratio with / without saliency maps':<44} {both / rate:8.2f}")
    for label, value in (("", rate), (", with saliency", both)):
        verdict = "met" if value >= 20 else "NOT met"
        print(f"{'target >= 20 img/s at batch 16' + label:<44} {verdict}")
    end_to_end()


def end_to_end() -> None:
    """C-STORE acknowledgement -> StudyResult row, through the real SCP, queue and worker."""
    from pynetdicom import AE
    from sqlmodel import select

    from xraygate.core import db
    from xraygate.core.config import Settings
    from xraygate.core.models import StudyResult
    from xraygate.core.queue import JobQueue
    from xraygate.core.storage import store_from_settings
    from xraygate.core.worker import Worker
    from xraygate.dicom_scp.server import start_scp
    from xraygate.inference.worker import make_handlers

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            dicom_host="127.0.0.1",
            dicom_port=0,
            min_free_bytes=0,
            queue_poll_seconds=0.005,
        )
        db.upgrade(settings.resolved_database_url)
        store, queue = store_from_settings(settings), JobQueue.from_settings(settings)
        worker = Worker(queue, make_handlers(settings, store, queue))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop, 0.005), daemon=True)
        thread.start()
        server = start_scp(settings, store, queue)
        ds = dcmread(RG1)
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
        latencies = []
        for i in range(5):
            ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.502.{i}"
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.503.{i}"
            assoc = ae.associate("127.0.0.1", server.port, ae_title="XRAYGATE")
            status = assoc.send_c_store(ds)
            acked = time.perf_counter()
            assert int(status.Status) == 0
            assoc.release()
            while True:
                with db.read_session(queue.engine) as session:
                    if session.scalars(
                        select(StudyResult).where(
                            StudyResult.study_instance_uid == ds.StudyInstanceUID
                        )
                    ).first():
                        break
                time.sleep(0.002)
            latencies.append(time.perf_counter() - acked)
        stop.set()
        server.shutdown()
        print(
            f"{'C-STORE ack -> stored result (5 studies)':<44} median "
            f"{statistics.median(latencies) * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms "
            f"(target < 1000 ms)"
        )


if __name__ == "__main__":
    main()
