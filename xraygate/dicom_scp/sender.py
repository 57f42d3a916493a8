"""A C-STORE SCU: sends files to any Storage SCP (``xraygate send``).

Files are scanned first (header only); each association proposes exactly the (SOP class,
transfer syntax) pairs its files need, so the data goes as stored, without transcoding. When a
corpus needs more presentation contexts than one association request may carry (128), it is
sent over several associations, one after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE
from rich.progress import Progress

from xraygate.core.dimse_scu import keep_responses
from xraygate.core.errors import AssociationRefused
from xraygate.dicom_scp.status import Status

__all__ = ["AssociationRefused", "SendReport", "send_paths"]

MAX_CONTEXTS = 120  # an association request carries at most 128 presentation contexts
NOT_DICOM = 0xC000  # reported for files that cannot be read as DICOM (never sent)
NOT_ACCEPTED = int(Status.SOP_CLASS_NOT_SUPPORTED)  # no accepted context for the file
NO_RESPONSE = 0xFFFF  # the association ended before the peer answered


@dataclass(frozen=True)
class Item:
    path: Path
    sop_class: str
    transfer_syntax: str


def stored(status: int) -> bool:
    """Success (0x0000) or a warning (0xBxxx): the peer stored the object."""
    return status == 0 or (status >> 12) == 0xB


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    on_result: Callable[[Path, int, str], None] | None = None  # called once per file

    def record(self, path: Path, status: int, comment: str = "") -> None:
        """Count one file; a warning (0xBxxx) means it was stored, so it counts as sent."""
        if stored(status):
            self.sent += 1
        else:
            self.failed += 1
            self.failures.append((str(path), status, comment))
        if self.on_result is not None:
            self.on_result(path, status, comment)


def iter_files(paths: Iterable[Path], report: SendReport) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            report.record(path, NOT_DICOM, "no such file or directory")


def scan(paths: Iterable[Path], report: SendReport) -> list[Item]:
    """Read each file's header; files that are not DICOM are reported, not sent."""
    items = []
    for path in iter_files(paths, report):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            items.append(Item(path, str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        except (InvalidDicomError, AttributeError, OSError, ValueError, EOFError) as exc:
            report.record(path, NOT_DICOM, f"not a DICOM file ({type(exc).__name__})")
    return items


def batches(items: list[Item], limit: int = MAX_CONTEXTS) -> Iterator[list[Item]]:
    """Split into groups whose presentation contexts fit in one association request."""
    batch: list[Item] = []
    contexts: set[tuple[str, str]] = set()
    for item in items:
        needed = contexts | {(item.sop_class, item.transfer_syntax)}
        if len(needed) > limit and batch:
            yield batch
            batch, needed = [], {(item.sop_class, item.transfer_syntax)}
        batch.append(item)
        contexts = needed
    if batch:
        yield batch


class _Sender:
    def __init__(self, ae: AE, host: str, port: int, called_aet: str, report: SendReport) -> None:
        self.ae = ae
        self.host = host
        self.port = port
        self.called_aet = called_aet
        self.report = report

    def send_batch(self, batch: list[Item], advance: Any) -> None:
        self.ae.requested_contexts = []
        for sop_class, syntax in sorted({(i.sop_class, i.transfer_syntax) for i in batch}):
            self.ae.add_requested_context(sop_class, [syntax])
        assoc = keep_responses(self.ae.associate(self.host, self.port, ae_title=self.called_aet))
        if not assoc.is_established:
            where = f"{self.called_aet}@{self.host}:{self.port}"
            if assoc.is_rejected:
                raise AssociationRefused(f"association with {where} rejected (check AE titles)")
            raise AssociationRefused(f"association with {where} aborted or unreachable")
        try:
            for n, item in enumerate(batch):
                if not assoc.is_established:
                    for lost in batch[n:]:
                        self.report.record(lost.path, NO_RESPONSE, "association ended")
                        advance()
                    return
                self._send_one(assoc, item)
                advance()
        finally:
            if assoc.is_established:
                assoc.release()

    def _send_one(self, assoc: Any, item: Item) -> None:
        try:
            response = assoc.send_c_store(item.path)
        except ValueError as exc:  # no accepted presentation context for this file
            self.report.record(item.path, NOT_ACCEPTED, str(exc)[:120])
            return
        except Exception as exc:
            # pynetdicom can fail inside send_c_store on a damaged file (e.g. an
            # UnboundLocalError on a truncated JPEG 2000 object): that file fails, the rest go on.
            self.report.record(item.path, NO_RESPONSE, f"not sent ({type(exc).__name__})")
            return
        if response is None or "Status" not in response:
            self.report.record(item.path, NO_RESPONSE, "no response")
            return
        comment = str(response.get("ErrorComment", "") or "")
        self.report.record(item.path, int(response.Status), comment)


def send_paths(
    paths: list[Path],
    *,
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str = "XRAYGATE_SCU",
    progress: bool = False,
    on_result: Callable[[Path, int, str], None] | None = None,
) -> SendReport:
    """Send every DICOM file under ``paths``; the report lists each failure with its status,
    and ``on_result(path, status, comment)`` hears of each file as it is done.

    Raises :class:`AssociationRefused` when the peer rejects or cannot be reached.
    """
    report = SendReport(on_result=on_result)
    items = scan(paths, report)
    ae = AE(ae_title=calling_aet)
    ae.maximum_pdu_size = 0
    sender = _Sender(ae, host, port, called_aet, report)
    bar = Progress(transient=False) if progress and items else None
    with bar if bar is not None else nullcontext():
        task = bar.add_task("C-STORE", total=len(items)) if bar is not None else None

        def advance() -> None:
            if bar is not None and task is not None:
                bar.advance(task)

        for batch in batches(items):
            sender.send_batch(batch, advance)
    return report
