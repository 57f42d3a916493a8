"""A running SCP on a free loopback port, over the parametrized database and store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from sqlmodel import select

from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.models import Instance, Job
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore, store_from_settings
from xraygate.dicom_scp.server import ScpServer, start_scp

SAMPLES = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "SC_rgb_jpeg_dcmtk.dcm", "CT_small.dcm"]


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path)


@dataclass
class RunningScp:
    settings: Settings
    store: ObjectStore
    queue: JobQueue
    server: ScpServer

    @property
    def port(self) -> int:
        return self.server.port

    def instances(self) -> list[Instance]:
        assert self.server.ingestor.flush(), "acknowledged instances were not indexed"
        with db.read_session(self.queue.engine) as session:
            return list(session.exec(select(Instance)).all())

    def jobs(self) -> list[Job]:
        assert self.server.ingestor.flush(), "acknowledged instances were not indexed"
        with db.read_session(self.queue.engine) as session:
            return list(session.exec(select(Job)).all())

    def assert_stored(self, path: Path) -> Instance:
        """The file's instance is indexed once, stored byte-exact, with one infer job."""
        sent = dcmread(path)
        [row] = [i for i in self.instances() if i.sop_instance_uid == sent.SOPInstanceUID]
        data = self.store.get_bytes(row.object_key)
        assert hashlib.sha256(data).hexdigest() == row.sha256 and len(data) == row.size
        stored = dcmread(_bytes_file(data))
        assert stored.SOPClassUID == sent.SOPClassUID
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert stored.file_meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
        assert stored.PixelData == sent.PixelData
        assert _differing(stored, sent) == set(), "the stored data set differs from the one sent"
        assert row.object_key.endswith(f"/{sent.SOPInstanceUID}.{row.sha256[:16]}.dcm")
        assert row.transfer_syntax_uid == sent.file_meta.TransferSyntaxUID
        jobs = [j for j in self.jobs() if j.instance_uid == row.sop_instance_uid]
        assert [(j.kind, j.dedupe_key) for j in jobs] == [
            ("infer", f"{row.sop_instance_uid}:{row.sha256}")
        ]
        return row


#: Data Set Trailing Padding (FFFC,FFFC): senders may drop it (dcmtk's storescu does)
_PADDING = 0xFFFCFFFC


def _differing(stored: Dataset, sent: Dataset) -> set[int]:
    tags = (set(stored.keys()) | set(sent.keys())) - {_PADDING}
    return {int(t) for t in tags if stored.get(t) != sent.get(t)}


def _bytes_file(data: bytes):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(data)


def start(settings: Settings) -> RunningScp:
    settings.dicom_host = "127.0.0.1"
    settings.dicom_port = 0
    store = store_from_settings(settings)
    queue = JobQueue.from_settings(settings)
    return RunningScp(settings, store, queue, start_scp(settings, store, queue))


@pytest.fixture
def scp(settings: Settings) -> Iterator[RunningScp]:
    running = start(settings)
    yield running
    running.server.shutdown()


def scu(calling: str = "TESTSCU") -> AE:
    from pynetdicom import StoragePresentationContexts

    ae = AE(ae_title=calling)
    ae.requested_contexts = StoragePresentationContexts[:100]
    return ae


def new_ct(study: str | None = None, series: str | None = None, patient: str = "P1") -> Dataset:
    """A small real CT (pydicom's CT_small) with fresh UIDs."""
    ds = dcmread(sample("CT_small.dcm"))
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient
    return ds


def dcmtk(tool: str) -> str:
    """Path of dcmtk's ``tool`` (pynetdicom installs same-named Python apps in the venv)."""
    import os
    import shutil
    import subprocess

    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        path = shutil.which(tool, path=directory)
        if not path:
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return path
    raise AssertionError(f"dcmtk's {tool} is required: install the Debian package dcmtk")
