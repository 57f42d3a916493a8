"""De-identify one DICOM object per the resolved :class:`~.profile.Profile`.

One pass over the element dict of each dataset, recursing into sequence items. Elements whose
action is Keep are not decoded at all (pydicom leaves them raw), and pixel data is never touched
unless it is cleaned, so it is written back byte for byte. The File Meta Information and the
preamble are replaced by our own (PS3.15 E.1.1).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

import xraygate
from xraygate.anonymizer import pixels
from xraygate.anonymizer.pixels import SiteRules
from xraygate.anonymizer.profile import CLEAN_PIXEL_CODE, Option, Profile, build_profile
from xraygate.anonymizer.values import (
    Pseudonymizer,
    Scrubber,
    dummy,
    empty,
    identifying_terms,
    is_registry_uid,
)
from xraygate.core.errors import BurnedInText, DeidentificationError, UnparseableInput

UNDEFINED_LENGTH = 0xFFFFFFFF
# Our implementation class UID: a fixed 2.25 UID (derived once from the name, never changes).
IMPLEMENTATION_UID = UID("2.25.302795916384217563418367385420474218517")
IMPLEMENTATION_VERSION = f"XRAYGATE_{xraygate.__version__}"[:16]
METHOD_TEXT = f"xraygate {xraygate.__version__} PS3.15 Annex E"[:64]
DEFAULT_BURNED_IN_MODALITIES = frozenset({"SC", "US", "OT"})

# Values that feed the free-text scrubber (names, IDs, addresses of the top-level dataset).
_TERM_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "MedicalRecordLocator",
    "StudyID",
)
_TEXT_SCRUB_VRS = frozenset({"LT", "ST", "UT", "UC"})


@dataclass(frozen=True)
class DeidConfig:
    """What a site chose: options, secret, rules."""

    options: frozenset[Option]
    secret: bytes
    rules: SiteRules = field(default_factory=SiteRules)
    burned_in_modalities: frozenset[str] = DEFAULT_BURNED_IN_MODALITIES
    shift_max_days: int = 365


@dataclass(frozen=True)
class FileTail:
    """Bytes ``[start, start + size)`` of an input file, copied as they are."""

    path: Path
    start: int
    size: int

    def read(self) -> bytes:
        with self.path.open("rb") as fh:
            fh.seek(self.start)
            return fh.read(self.size)

    def copy_to(self, out: BinaryIO) -> None:
        out.flush()
        with self.path.open("rb") as src:
            offset, left = self.start, self.size
            try:
                while left > 0:  # kernel-side copy, no pass through user space
                    done = os.copy_file_range(src.fileno(), out.fileno(), left, offset)
                    if done <= 0:
                        break
                    offset, left = offset + done, left - done
            except OSError:
                pass
            if left > 0:
                src.seek(offset)
                out.seek(0, 2)
                out.write(src.read(left))


@dataclass(frozen=True)
class DeidResult:
    """The de-identified file: its re-encoded head plus the untouched pixel data bytes."""

    head: bytes
    tail: bytes | memoryview | FileTail
    patient_id: str  # pseudonymous
    study_uid: str
    series_uid: str
    sop_uid: str
    pixels_cleaned: bool
    codes: tuple[str, ...]
    trailer: bytes = b""  # de-identified elements that followed the pixel data

    @property
    def data(self) -> bytes:
        tail = self.tail.read() if isinstance(self.tail, FileTail) else bytes(self.tail)
        return self.head + tail + self.trailer

    def write(self, path: Path) -> None:
        with path.open("wb") as fh:
            fh.write(self.head)
            if isinstance(self.tail, FileTail):
                self.tail.copy_to(fh)
            else:
                fh.write(self.tail)
            fh.write(self.trailer)


class _Source:
    """The input: bytes in memory, or a file read only up to its pixel data."""

    def __init__(self, data: bytes | None = None, path: Path | None = None) -> None:
        self.data, self.path = data, path
        if data is not None:
            self.fp: BinaryIO = io.BytesIO(data)
            self.size = len(data)
        else:
            assert path is not None
            self.fp = path.open("rb")
            self.size = self.fp.seek(0, 2)
            self.fp.seek(0)

    def full(self) -> bytes:
        if self.data is None:
            self.fp.seek(0)
            self.data = self.fp.read()
        return self.data

    def at(self, offset: int, count: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + count]
        self.fp.seek(offset)
        return self.fp.read(count)

    def tail(self, start: int, end: int) -> bytes | memoryview | FileTail:
        if self.path is not None:
            return FileTail(self.path, start, end - start)
        assert self.data is not None
        return memoryview(self.data)[start:end]

    def close(self) -> None:
        self.fp.close()


@dataclass
class _State:
    patient_key: str
    days: int
    terms: list[str]
    scrubber: Scrubber | None = None
    private_kept: set[int] = field(default_factory=set)

    def learn(self, value: object) -> None:
        """A person name met on the walk also feeds the scrubber (for later free text)."""
        self.terms.extend(identifying_terms([str(value)]))
        self.scrubber = None

    def scrub(self, text: str) -> str:
        if self.scrubber is None:
            self.scrubber = Scrubber(self.terms)
        return self.scrubber.clean(text)


class Deidentifier:
    """Thread-safe once built; keep one per configuration."""

    def __init__(self, config: DeidConfig) -> None:
        self.config = config
        self.profile: Profile = build_profile(config.options)
        self.pseudo = Pseudonymizer(config.secret, config.shift_max_days)
        self._unlisted: dict[int, str] = {}
        self._vr_cache: dict[int, str] = {}
        self._value_ops: dict[str, Callable[[Dataset, int, str, _State], None]] = {
            "X": self._remove,
            "Z": self._empty,
            "D": self._dummy,
            "U": self._uid,
            "C": self._clean,
            "UI?": self._maybe_uid,
            "S": self._scrub,
        }

    # -- entry points ----------------------------------------------------------------------
    def deidentify_file(self, path: Path) -> DeidResult:
        """De-identify a file; its pixel data are neither read nor parsed, only copied."""
        try:
            source = _Source(path=path)
        except OSError as exc:
            raise UnparseableInput(f"cannot read file: {exc.strerror}") from exc
        try:
            return self._run(source)
        except OSError as exc:
            raise UnparseableInput(f"cannot read file: {exc.strerror}") from exc
        finally:
            source.close()

    def deidentify_bytes(self, data: bytes) -> DeidResult:
        return self._run(_Source(data=data))

    def _run(self, source: _Source) -> DeidResult:
        split = read_split(source)
        ds = split.ds
        if split.span is not None and self._needs_cleaning(ds):
            split = _Split(read(source.full()))  # cleaning needs the decoded pixels
            ds = split.ds
        try:
            cleaned = self.deidentify_dataset(ds, split.trailer)
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            trailer = _encode(split.trailer, ds) if split.trailer is not None else b""
        except DeidentificationError:
            raise
        except Exception as exc:  # a malformed element surfaces only when decoded/written
            raise UnparseableInput(f"cannot de-identify: {type(exc).__name__}: {exc}") from exc
        codes = tuple(c for c, _ in self.profile.codes)
        return DeidResult(
            buf.getvalue(),
            source.tail(*split.span) if split.span is not None else b"",
            str(ds.PatientID),
            str(ds.get("StudyInstanceUID", "")),
            str(ds.get("SeriesInstanceUID", "")),
            str(ds.SOPInstanceUID),
            cleaned,
            codes + ((CLEAN_PIXEL_CODE.value,) if cleaned else ()),
            trailer,
        )

    def _needs_cleaning(self, ds: Dataset) -> bool:
        return pixels.may_carry_burned_in_text(ds, self.config.burned_in_modalities)

    def deidentify_dataset(self, ds: Dataset, trailer: Dataset | None = None) -> bool:
        """De-identify in place (and ``trailer``: the elements after split-off pixel data);
        True when the pixel data were cleaned."""
        cleaned = self._burned_in(ds)
        state = self._state(ds)
        prof = self.profile
        if prof.overlay_data_action == "C":
            pixels.clean_overlays(ds, self.config.rules.rule_for(ds))
        self._walk(ds, state)
        if trailer is not None:
            self._walk(trailer, state)
        self._finish(ds, state, cleaned)
        return cleaned

    # -- steps -----------------------------------------------------------------------------
    def _burned_in(self, ds: Dataset) -> bool:
        if not pixels.may_carry_burned_in_text(ds, self.config.burned_in_modalities):
            return False
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            return False  # (a split header never gets here: _run re-reads those in full)
        rule = self.config.rules.rule_for(ds)
        if rule is None:
            raise BurnedInText(
                "image may carry burned-in text and no pixel-cleaning rule exists for "
                f"{ds.get('Manufacturer', '') or '?'} / "
                f"{ds.get('ManufacturerModelName', '') or '?'}"
            )
        pixels.clean_pixels(ds, rule)
        return True

    def _state(self, ds: Dataset) -> _State:
        issuer = str(ds.get("IssuerOfPatientID", "") or "")
        key = f"{issuer}|{ds.get('PatientID', '') or ''}"
        days = self.pseudo.date_shift_days(key) if self.profile.modified_dates else 0
        terms = [str(ds.get(k, "") or "") for k in _TERM_KEYWORDS if k in ds]
        return _State(key, days, identifying_terms(terms))

    def _finish(self, ds: Dataset, state: _State, cleaned: bool) -> None:
        pid = self.pseudo.patient_id(state.patient_key)
        ds.PatientID = pid
        ds.PatientName = pid
        ds.PatientIdentityRemoved = "YES"
        codes = list(self.profile.codes)
        if cleaned:
            codes.append((CLEAN_PIXEL_CODE.value, CLEAN_PIXEL_CODE.meaning))
        ds.DeidentificationMethod = [METHOD_TEXT, *(meaning[:64] for _, meaning in codes)]
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = self.profile.temporal_status
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        meta.ImplementationClassUID = IMPLEMENTATION_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds.file_meta = meta
        ds.preamble = None  # written as 128 zero bytes

    # -- the walk --------------------------------------------------------------------------
    def _vr(self, ds: Dataset, tag: int) -> str:
        raw = ds.get_item(tag)
        vr = raw.VR if raw is not None else None
        if vr:
            return str(vr)
        cached = self._vr_cache.get(tag)
        if cached is None:
            try:
                cached = dictionary_VR(tag)
            except KeyError:
                cached = "UN"
            self._vr_cache[tag] = cached
        return cached

    def _walk(self, ds: Dataset, state: _State) -> None:
        actions = self.profile.actions
        creators: list[int] = []  # private creator tags, kept only when a block is kept
        for tag in list(ds.keys()):
            group = tag >> 16
            if group & 1:
                self._private(ds, tag, state, creators)
                continue
            action = actions.get(tag) or self._unlisted.get(tag) or self._classify(ds, tag)
            if action == "K":
                raw = ds.get_item(tag)
                if raw is not None and (
                    raw.VR == "SQ" or (raw.VR is None and self._vr(ds, tag) == "SQ")
                ):
                    self._sequence(ds, tag, "K", state)
                continue
            vr = self._vr(ds, tag)
            if vr == "SQ":
                self._sequence(ds, tag, self.profile.seq_actions.get(tag, "K"), state)
            else:
                if vr == "PN":
                    state.learn(ds[tag].value)
                self._value_ops[action](ds, tag, vr, state)
        for creator in creators:
            if creator not in state.private_kept:
                del ds[creator]

    def _classify(self, ds: Dataset, tag: int) -> str:
        """The action for a tag the table does not list (cached per tag when it is stable)."""
        group, elem = tag >> 16, tag & 0xFFFF
        prof = self.profile
        if 0x5000 <= group <= 0x501E:
            return "X" if prof.curve_action in ("X", "C") else "K"  # no curve cleaner: remove
        if 0x6000 <= group <= 0x601E:
            if elem == 0x3000:
                return "K" if prof.overlay_data_action == "C" else "X"
            if elem == 0x4000 or self._vr(ds, tag) in ("LO", "LT"):
                return "S" if prof.overlay_comments_action == "C" else "X"
            return "K" if prof.overlay_data_action == "C" else "X"
        if group in (0x0000, 0x0002, 0x0004) or elem == 0x0000:
            action = "X"  # command, file meta, directory, group lengths
        else:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = ""
            action = _BY_VR.get(vr, "K") if vr else "X"  # unknown public tags are removed
            if vr in ("DA", "DT", "TM"):
                action = prof.date_action
        self._unlisted[tag] = action
        return action

    def _private(self, ds: Dataset, tag: int, state: _State, creators: list[int]) -> None:
        elem = tag & 0xFFFF
        if self.profile.private_action != "C" or elem < 0x0010:
            del ds[tag]
            return
        if elem <= 0x00FF:
            creators.append(tag)
            return
        group = tag >> 16
        creator_tag = (group << 16) | (elem >> 8)
        creator = ds.get(creator_tag)
        name = str(creator.value).strip().upper() if creator is not None else ""
        if (group, name, elem & 0xFF) not in self.config.rules.safe_private:
            del ds[tag]
            return
        state.private_kept.add(creator_tag)
        if self._vr(ds, tag) == "SQ":  # a safe private sequence is still walked item by item
            self._sequence(ds, tag, "K", state)

    def _sequence(self, ds: Dataset, tag: int, action: str, state: _State) -> None:
        if action == "X":
            del ds[tag]
        elif action == "Z":
            ds[tag] = DataElement(tag, "SQ", Sequence())
        elif action == "D":
            ds[tag] = DataElement(tag, "SQ", Sequence([Dataset()]))
        else:  # K, C (and U for reference sequences): walk every item
            for item in ds[tag].value:
                self._walk(item, state)

    # -- value actions ---------------------------------------------------------------------
    def _remove(self, ds: Dataset, tag: int, vr: str, state: _State) -> None:
        del ds[tag]

    def _empty(self, ds: Dataset, tag: int, vr: str, state: _State) -> None:
        ds[tag] = DataElement(tag, vr, empty(vr))

    def _dummy(self, ds: Dataset, tag: int, vr: str, state: _State) -> None:
        if vr == "UI":
            self._uid(ds, tag, vr, state)
        else:
            ds[tag] = DataElement(tag, vr, dummy(vr))

    def _uid(self, ds: Dataset, tag: int, vr: str, state: _State) -> None:
        elem = ds[tag]
        elem.value = _map_values(elem.value, self.pseudo.uid)

    def _maybe_uid(self, ds: Dataset, tag: int, vr: str, state: _State) -> None:
        elem = ds[tag]
        elem.value = _map_values(
            elem.value, lambda v: v if is_registry_uid(v) else self.pseudo.uid(v)
        )

    def _scrub(self, ds: Dataset, tag: int, vr: str, state: _State) -> None:
        elem = ds[tag]
        if isinstance(elem.value, (str, MultiValue, list)):
            elem.value = _map_values(elem.value, state.scrub)

    def _clean(self, ds: Dataset, tag: int, vr: str, state: _State) -> None:
        """C: values of similar meaning that identify nobody, by VR."""
        if vr in ("DA", "DT", "TM"):
            if self.profile.modified_dates:
                elem = ds[tag]
                elem.value = _map_values(elem.value, lambda v: self.pseudo.shift(vr, v, state.days))
            # else C comes from Full Dates' K, never here
        elif vr == "AE":
            elem = ds[tag]
            elem.value = _map_values(elem.value, self.pseudo.ae_title)
        elif vr in ("LO", "SH", "LT", "ST", "UT", "UC", "CS"):
            self._scrub(ds, tag, vr, state)
        elif vr == "UI":
            self._uid(ds, tag, vr, state)
        elif vr == "PN":
            self._dummy(ds, tag, vr, state)
        else:  # binary or numeric values have no cleaner: a dummy identifies nobody
            self._dummy(ds, tag, vr, state)


_BY_VR = {"PN": "X", "UI": "UI?", "LT": "S", "ST": "S", "UT": "S", "UC": "S", "UN": "X"}


def _map_values(value: Any, fn: Callable[[str], str]) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, (MultiValue, list)):
        return [fn(str(v)) for v in value]
    return fn(str(value))


@dataclass
class _Split:
    ds: Dataset  # everything before the pixel data, or the full dataset
    span: tuple[int, int] | None = None  # the raw Pixel Data element, copied as it is
    trailer: Dataset | None = None  # elements after it (padding, signatures), de-identified


def read_split(source: _Source) -> _Split:
    """Parse everything but the pixel data and locate its bytes in a little-endian,
    non-deflated file; otherwise (or when anything looks wrong) parse the full file."""
    try:
        ds = dcmread(source.fp, stop_before_pixels=True)
        start = source.fp.tell()
    except Exception:
        return _Split(read(source.full()))
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax in _NO_SPLIT or source.at(start, 4) != _PIXEL_TAG:
        return _Split(read(source.full()))
    implicit = bool(ds.original_encoding[0])
    end = _element_end(source, start, explicit=not implicit)
    if end < 0 or end > source.size:  # a truncated pixel element: the full path decides
        return _Split(read(source.full()))
    trailer = None
    if end < source.size:
        try:
            trailer = read_dataset(io.BytesIO(source.at(end, source.size - end)), implicit, True)
            _check_complete(trailer, source.size - end)
            for tag in list(trailer.keys()):
                trailer[tag]
        except UnparseableInput:
            raise
        except Exception:
            return _Split(read(source.full()))
        if not trailer or min(trailer.keys()) <= 0x7FE00010:
            return _Split(read(source.full()))
    _validate(ds, source.size, header_end=start)
    return _Split(ds, (start, end), trailer)


def _encode(trailer: Dataset, ds: Dataset) -> bytes:
    """The trailing elements in the dataset's encoding."""
    if not trailer:
        return b""
    fp = DicomBytesIO()
    fp.is_implicit_VR = bool(ds.original_encoding[0])
    fp.is_little_endian = True
    write_dataset(fp, trailer)
    return fp.getvalue()


def _element_end(source: _Source, start: int, *, explicit: bool) -> int:
    """End offset of the element at ``start`` (walking the items of encapsulated data)."""
    head = source.at(start, 12)
    length = int.from_bytes(head[8:12] if explicit else head[4:8], "little")
    pos = start + (12 if explicit else 8)
    if length != UNDEFINED_LENGTH:
        return pos + length
    while pos + 8 <= source.size:
        item = source.at(pos, 8)
        tag, item_len = item[:4], int.from_bytes(item[4:8], "little")
        pos += 8
        if tag == _SEQ_DELIMITER:
            return pos
        if tag != _ITEM or item_len == UNDEFINED_LENGTH:
            return -1
        pos += item_len
    return -1


_PIXEL_TAG = b"\xe0\x7f\x10\x00"
_ITEM = b"\xfe\xff\x00\xe0"
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0"
_NO_SPLIT = {DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian}


def read(data: bytes) -> Dataset:
    """Parse a DICOM file (File Meta required, preamble tolerated missing); anything else,
    including a truncated file, is unparseable input."""
    try:
        try:
            ds = dcmread(io.BytesIO(data))
        except InvalidDicomError:  # no preamble/prefix: accept only with a File Meta group
            ds = dcmread(io.BytesIO(data), force=True)
        _validate(ds, len(data))
        _check_encapsulated(ds, data)
    except UnparseableInput:
        raise
    except Exception as exc:  # pydicom raises many types for bad input
        raise UnparseableInput(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    return ds


def _validate(ds: Dataset, size: int, header_end: int | None = None) -> None:
    if "TransferSyntaxUID" not in ds.file_meta:
        raise UnparseableInput("no File Meta Information (transfer syntax unknown)")
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if not str(ds.get(keyword, "") or ""):
            raise UnparseableInput(f"no {keyword}")
    _check_complete(ds, size if header_end is None else header_end)


def _check_complete(ds: Dataset, size: int) -> None:
    """pydicom stops quietly at a truncated element: check every top-level value is whole and
    that no partial element header is left at the end."""
    end = 0
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH:
            continue
        if isinstance(raw.value, bytes) and len(raw.value) != raw.length:
            raise UnparseableInput(f"truncated file: element {tag} is incomplete")
        end = max(end, raw.value_tell + raw.length)
    if end and 0 < size - end < 12 and end == _last_end(ds):
        raise UnparseableInput("truncated file: partial element at the end")


def _check_encapsulated(ds: Dataset, data: bytes) -> None:
    """Encapsulated pixel data must end with its sequence delimiter inside the file."""
    raw = ds.get_item(0x7FE00010)
    if isinstance(raw, RawDataElement) and raw.length == UNDEFINED_LENGTH and raw.value_tell:
        explicit = not ds.original_encoding[0]
        start = raw.value_tell - (12 if explicit else 8)
        if _element_end(_Source(data=data), start, explicit=explicit) < 0:
            raise UnparseableInput("truncated file: encapsulated pixel data not terminated")


def _last_end(ds: Dataset) -> int:
    raw = ds.get_item(max(ds.keys()))
    if isinstance(raw, RawDataElement) and raw.length != UNDEFINED_LENGTH:
        return int(raw.value_tell + raw.length)
    return -1


__all__ = ["DeidConfig", "DeidResult", "Deidentifier", "read"]
