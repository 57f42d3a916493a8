"""Issue 10 item 5: dcmtk's dcmsend over EVERY file of the pydicom-data wheel and of pydicom's
own test files, each in its own transfer syntax (deflate included), in one association: no
association is aborted by a bad request, every file gets a definite status, nothing accepted
is lost. The per-file outcome table is written to a file and printed (run with -s)."""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, _config

from tests.dicom_scp.conftest import RunningScp, dcmtk, start
from xraygate.core.config import Settings

pytestmark = pytest.mark.integration

SITE = Path(pydicom.__file__).parent.parent
ROOTS = [SITE / "pydicom" / "data" / "test_files", SITE / "data_store" / "data"]
#: storescu options that propose only (or first) the given uncompressed syntax
OWN_SYNTAX = {"1.2.840.10008.1.2": "--propose-implicit", "1.2.840.10008.1.2.2": "--propose-big"}
#: statuses that say the object is at fault (refused for good, with a reason)
REFUSALS = {0xA900, 0xC000}


@dataclass
class Outcome:
    file: Path
    syntax: str = ""
    sent_as: str = ""
    sender: str = ""
    status: int | None = None
    reason: str = ""

    def row(self) -> str:
        status = "not sent" if self.status is None else f"0x{self.status:04X}"
        name = self.file.relative_to(SITE)
        cells = [name, _name(self.syntax), _name(self.sent_as), self.sender, status, self.reason]
        return "| " + " | ".join(str(c) for c in cells) + " |"


def _name(uid: str) -> str:
    return UID(uid).name if uid else ""


def every_file() -> list[Path]:
    files = [p for root in ROOTS for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in files if "__pycache__" not in p.parts and p.suffix != ".py")


def parse_report(text: str) -> dict[Path, dict[str, str]]:
    """dcmsend's --create-report-file: one block of "Key : value" lines per instance."""
    entries: dict[Path, dict[str, str]] = {}
    for block in text.split("\n\n"):
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(" : ") for line in block.splitlines())
        )
        if "Filename" in fields:
            entries[Path(fields["Filename"])] = fields
    return entries


def _uid(value: str) -> str:
    return value.split(" = ")[0].strip()


def _status(value: str) -> int | None:
    found = re.match(r"0x([0-9a-fA-F]{4})", value)
    return int(found.group(1), 16) if found else None


def refusal_reasons(records: list[logging.LogRecord]) -> list[str]:
    """The SCP's refusals in the order it answered them (one association at a time)."""
    pattern = re.compile(r"refused with 0x[0-9A-F]{4}: (.*)$")
    found = (pattern.search(r.getMessage()) for r in records)
    return [m.group(1) for m in found if m]


def send_with_dcmsend(scp: RunningScp, files: list[Path], tmp: Path) -> tuple[str, str]:
    report = tmp / "dcmsend-report.txt"
    proc = subprocess.run(
        [dcmtk("dcmsend"), "-aet", "DCMSEND", "-aec", "XRAYGATE"]
        + ["--decompress-never", "--no-halt", "--no-uid-checks", "--read-file"]
        + ["--create-report-file", str(report), "127.0.0.1", str(scp.port)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return report.read_text(), proc.stdout + proc.stderr


def peer(scp: RunningScp) -> list[str]:
    return ["127.0.0.1", str(scp.port)]


def send_with_storescu(scp: RunningScp, path: Path, option: str) -> int | None:
    proc = subprocess.run(
        [
            dcmtk("storescu"),
            "-v",
            "-aet",
            "STORESCU",
            "-aec",
            "XRAYGATE",
            option,
            *peer(scp),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(
        r"Received Store Response \((?:Status: )?([^)]*)\)", proc.stdout + proc.stderr
    )
    if found is None:
        return None
    text = found.group(1)
    if text.startswith("Success"):
        return 0
    hex_status = re.search(r"0x([0-9A-Fa-f]{4})", proc.stdout + proc.stderr)
    return int(hex_status.group(1), 16) if hex_status else -1


def send_raw_batch(scp: RunningScp, paths: list[Path]) -> dict[Path, int]:
    """Files dcmsend would not send: their bytes as they are, by pynetdicom, one association."""
    metas = {p: read_file_meta_info(p) for p in paths}
    ae = AE(ae_title="RAWSCU")
    for pair in sorted(
        {(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas.values()}
    ):
        ae.add_requested_context(pair[0], [pair[1]])
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="XRAYGATE")
    assert assoc.is_established
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    statuses = {}
    accepted = {
        (str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts
    }
    try:
        for path in paths:
            meta = metas[path]
            if (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)) not in accepted:
                continue  # refused at negotiation: not a storage SOP class we take
            statuses[path] = int(assoc.send_c_store(path).Status)
            assert assoc.is_established, f"{path.name} ended the association"
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()
    return statuses


def sop_instance(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)


def sendable_raw(path: Path) -> bool:
    try:
        meta = read_file_meta_info(path)
    except Exception:
        return False
    return bool(meta.get("MediaStorageSOPClassUID")) and bool(meta.get("TransferSyntaxUID"))


def test_dcmsend_every_test_file_in_its_own_syntax(
    sqlite_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    scp = start(sqlite_settings)
    files = every_file()
    assert len(files) > 200
    outcomes = {f: Outcome(f) for f in files}
    try:
        report, output = send_with_dcmsend(scp, files, tmp_path)
        assert "abort" not in output.lower(), output[-3000:]
        assert re.search(r"Number of associations\s*:\s*1\b", report), "one association"
        entries = parse_report(report)
        accepted: set[str] = set()
        for path, fields in entries.items():
            out = outcomes[path]
            out.syntax, out.sent_as = _uid(fields["Original Xfer"]), _uid(fields["Network Xfer"])
            out.status, out.sender = _status(fields["DIMSE Status"]), "dcmsend"
            if out.status == 0:  # the data set's UID (the report has the file meta's)
                accepted.add(sop_instance(path))
        dcmsend_refusals = [o for o in outcomes.values() if o.status not in (None, 0)]
        reasons = refusal_reasons(caplog.records)
        assert len(reasons) == len(dcmsend_refusals), "each refusal has a logged reason"
        for out, reason in zip(dcmsend_refusals, reasons, strict=True):
            out.reason = reason
        caplog.clear()
        # dcmsend converts Implicit VR and Big Endian files to Explicit VR LE: send those again
        # with storescu proposing their own syntax
        for out in outcomes.values():
            if out.status is not None and out.sent_as != out.syntax and out.syntax in OWN_SYNTAX:
                status = send_with_storescu(scp, out.file, OWN_SYNTAX[out.syntax])
                if status is None:  # storescu cannot read it (no file meta): dcmsend's stands
                    out.reason = "storescu cannot send it in its own syntax; dcmsend converted it"
                    continue
                out.status, out.sent_as, out.sender = status, out.syntax, "storescu"
                if out.status == 0:
                    accepted.add(sop_instance(out.file))
                out.reason = (refusal_reasons(caplog.records) or [""])[-1] if out.status else ""
                caplog.clear()
        # what dcmsend would not send (truncated, invalid UIDs...) goes as raw bytes
        unsent = [o.file for o in outcomes.values() if o.status is None and sendable_raw(o.file)]
        for path, status in send_raw_batch(scp, unsent).items():
            out = outcomes[path]
            meta = read_file_meta_info(path)
            out.syntax = out.sent_as = str(meta.TransferSyntaxUID)
            out.status, out.sender = status, "pynetdicom (raw bytes)"
            if status == 0:
                accepted.add(sop_instance(path))
        raw_reasons = refusal_reasons(caplog.records)
        for out, reason in zip(
            [outcomes[p] for p in unsent if outcomes[p].status], raw_reasons, strict=True
        ):
            out.reason = reason
        for out in outcomes.values():
            if out.status is None and out.file in unsent:
                sop_class = UID(str(read_file_meta_info(out.file).MediaStorageSOPClassUID))
                out.reason = f"SOP class refused at negotiation: {sop_class.name}"
            elif out.status is None:
                out.reason = "not a DICOM Part 10 file with a transfer syntax: not sendable"
        table = write_table(outcomes.values(), tmp_path / "outcomes.md")
        print("\n" + table)
        statuses = [o.status for o in outcomes.values() if o.status is not None]
        assert set(statuses) <= {0} | REFUSALS, "no file makes the SCP fail internally"
        by_name = {o.file.name: o for o in outcomes.values()}
        assert by_name["image_dfl.dcm"].status == 0 and by_name["image_dfl.dcm"].sent_as.endswith(
            ".99"
        )
        for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG3_UNCR.dcm", "MR_small_bigendian.dcm"):
            assert by_name[name].status == 0, by_name[name]
        assert by_name["MR_small_bigendian.dcm"].sent_as == "1.2.840.10008.1.2.2"
        assert {i.sop_instance_uid for i in scp.instances()} == accepted, "nothing accepted is lost"
    finally:
        scp.server.shutdown()


def write_table(outcomes: object, path: Path) -> str:
    rows = sorted(outcomes, key=lambda o: str(o.file))  # type: ignore[attr-defined]
    counts: dict[str, int] = {}
    for o in rows:
        key = "not sent" if o.status is None else f"0x{o.status:04X}"
        counts[key] = counts.get(key, 0) + 1
    lines = [
        "| file | transfer syntax | sent as | sender | status | reason |",
        "|---|---|---|---|---|---|",
        *(o.row() for o in rows),
        "",
        "Totals: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
    ]
    text = "\n".join(lines)
    path.write_text(text + "\n")
    return text
