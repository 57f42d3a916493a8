"""A C-STORE SCU: sends files to any Storage SCP (``xraygate send``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE
from rich.progress import Progress, TaskID

from xraygate.core.errors import IngestError, XraygateError

MAX_CONTEXTS = 120  # an association request carries at most 128 presentation contexts


@dataclass(frozen=True)
class Item:
    path: Path
    sop_class: str
    transfer_syntax: str


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    failures: list[tuple[str, int, str]] = field(default_factory=list)

    def record(self, path: Path, status: int, comment: str = "") -> None:
        if status == 0:
            self.sent += 1
        else:
            self.failed += 1
            self.failures.append((str(path), status, comment))


class AssociationRefused(XraygateError):
    """The peer rejected or aborted the association."""


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            raise IngestError(0xC000, f"no such file or directory: {path}")


def scan(paths: Iterable[Path], report: SendReport) -> list[Item]:
    """Read each file's header; files that are not DICOM are reported, not sent."""
    items = []
    for path in iter_files(paths):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            items.append(Item(path, str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        except (InvalidDicomError, AttributeError, OSError, ValueError) as exc:
            report.record(path, 0xC000, f"not a DICOM file ({type(exc).__name__})")
    return items


def _batches(items: list[Item]) -> Iterator[list[Item]]:
    """Split into groups whose presentation contexts fit in one association request."""
    batch: list[Item] = []
    contexts: set[tuple[str, str]] = set()
    for item in items:
        needed = contexts | {(item.sop_class, item.transfer_syntax)}
        if len(needed) > MAX_CONTEXTS and batch:
            yield batch
            batch, needed = [], {(item.sop_class, item.transfer_syntax)}
        batch.append(item)
        contexts = needed
    if batch:
        yield batch


def _send_batch(
    batch: list[Item],
    ae: AE,
    host: str,
    port: int,
    called_aet: str,
    report: SendReport,
    progress: Progress | None,
    task: TaskID | None,
) -> None:
    ae.requested_contexts = []
    for sop_class, syntax in sorted({(i.sop_class, i.transfer_syntax) for i in batch}):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise AssociationRefused(f"association with {called_aet}@{host}:{port} {reason}")
    try:
        for item in batch:
            response = assoc.send_c_store(item.path)
            status = int(getattr(response, "Status", 0xFFFF)) if response else 0xFFFF
            comment = str(getattr(response, "ErrorComment", "")) if response else "no response"
            report.record(item.path, status, comment)
            if progress is not None and task is not None:
                progress.advance(task)
    finally:
        assoc.release()


def send_paths(
    paths: list[Path],
    *,
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str = "XRAYGATE_SCU",
    progress: bool = False,
) -> SendReport:
    """Send every DICOM file under ``paths``; the report lists each failure with its status."""
    report = SendReport()
    items = scan(paths, report)
    ae = AE(ae_title=calling_aet)
    ae.maximum_pdu_size = 0
    if not progress:
        for batch in _batches(items):
            _send_batch(batch, ae, host, port, called_aet, report, None, None)
        return report
    with Progress() as bar:
        task = bar.add_task("C-STORE", total=len(items))
        for batch in _batches(items):
            _send_batch(batch, ae, host, port, called_aet, report, bar, task)
    return report
