"""De-identify one DICOM object per the resolved :class:`~.profile.Profile`.

One pass over the element dict of each dataset, recursing into sequence items. Elements whose
action is Keep are not decoded at all (pydicom leaves them raw), and pixel data is never touched
unless it is cleaned, so it is written back byte for byte. The File Meta Information and the
preamble are replaced by our own (PS3.15 E.1.1). Reading the input (up to its pixel data, with
the truncation checks) is :mod:`.reading`'s.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID

import xraygate
from xraygate.anonymizer import pixels
from xraygate.anonymizer.pixels import SiteRules
from xraygate.anonymizer.profile import CLEAN_PIXEL_CODE, Action, Option, Profile, build_profile
from xraygate.anonymizer.reading import FileTail, Source, Split, encode_trailer, read, read_split
from xraygate.anonymizer.values import (
    Pseudonymizer,
    Scrubber,
    dummy,
    empty,
    identifying_terms,
    is_registry_uid,
)
from xraygate.core.errors import BurnedInText, DeidentificationError, UnparseableInput

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
        self._unlisted: dict[int, Action] = {}
        self._vr_cache: dict[int, str] = {}
        self._value_ops: dict[Action, Callable[[Dataset, int, str, _State], None]] = {
            Action.REMOVE: self._remove,
            Action.EMPTY: self._empty,
            Action.DUMMY: self._dummy,
            Action.UID: self._uid,
            Action.CLEAN: self._clean,
            Action.MAYBE_UID: self._maybe_uid,
            Action.SCRUB: self._scrub,
        }

    # -- entry points ----------------------------------------------------------------------
    def deidentify_file(self, path: Path) -> DeidResult:
        """De-identify a file; its pixel data are neither read nor parsed, only copied."""
        try:
            source = Source(path=path)
        except OSError as exc:
            raise UnparseableInput(f"cannot read file: {exc.strerror}") from exc
        try:
            return self._run(source)
        except OSError as exc:
            raise UnparseableInput(f"cannot read file: {exc.strerror}") from exc
        finally:
            source.close()

    def deidentify_bytes(self, data: bytes) -> DeidResult:
        return self._run(Source(data=data))

    def _run(self, source: Source) -> DeidResult:
        split = read_split(source)
        ds = split.ds
        if split.span is not None and self._needs_cleaning(ds):
            split = Split(read(source.full()))  # cleaning needs the decoded pixels
            ds = split.ds
        try:
            cleaned = self.deidentify_dataset(ds, split.trailer)
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            trailer = encode_trailer(split.trailer, ds) if split.trailer is not None else b""
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
        if prof.overlay_data_action == Action.CLEAN:
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
            if action == Action.KEEP:
                raw = ds.get_item(tag)
                if raw is not None and (
                    raw.VR == "SQ" or (raw.VR is None and self._vr(ds, tag) == "SQ")
                ):
                    self._sequence(ds, tag, Action.KEEP, state)
                continue
            vr = self._vr(ds, tag)
            if vr == "SQ":
                self._sequence(ds, tag, self.profile.seq_actions.get(tag, Action.KEEP), state)
            else:
                if vr == "PN":
                    state.learn(ds[tag].value)
                self._value_ops[action](ds, tag, vr, state)
        for creator in creators:
            if creator not in state.private_kept:
                del ds[creator]

    def _classify(self, ds: Dataset, tag: int) -> Action:
        """The action for a tag the table does not list (cached per tag when it is stable)."""
        group, elem = tag >> 16, tag & 0xFFFF
        prof = self.profile
        if 0x5000 <= group <= 0x501E:
            remove = prof.curve_action in (Action.REMOVE, Action.CLEAN)  # C: no curve cleaner
            return Action.REMOVE if remove else Action.KEEP
        if 0x6000 <= group <= 0x601E:
            cleaned = prof.overlay_data_action == Action.CLEAN
            if elem == 0x3000:
                return Action.KEEP if cleaned else Action.REMOVE
            if elem == 0x4000 or self._vr(ds, tag) in ("LO", "LT"):
                comments = prof.overlay_comments_action == Action.CLEAN
                return Action.SCRUB if comments else Action.REMOVE
            return Action.KEEP if cleaned else Action.REMOVE
        if group in (0x0000, 0x0002, 0x0004) or elem == 0x0000:
            action = Action.REMOVE  # command, file meta, directory, group lengths
        else:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = ""
            # unknown public tags are removed
            action = _BY_VR.get(vr, Action.KEEP) if vr else Action.REMOVE
            if vr in ("DA", "DT", "TM"):
                action = prof.date_action
        self._unlisted[tag] = action
        return action

    def _private(self, ds: Dataset, tag: int, state: _State, creators: list[int]) -> None:
        elem = tag & 0xFFFF
        if self.profile.private_action != Action.CLEAN or elem < 0x0010:
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
            self._sequence(ds, tag, Action.KEEP, state)

    def _sequence(self, ds: Dataset, tag: int, action: Action, state: _State) -> None:
        if action == Action.REMOVE:
            del ds[tag]
        elif action == Action.EMPTY:
            ds[tag] = DataElement(tag, "SQ", Sequence())
        elif action == Action.DUMMY:
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


_BY_VR = {
    "PN": Action.REMOVE,
    "UI": Action.MAYBE_UID,
    **dict.fromkeys(("LT", "ST", "UT", "UC"), Action.SCRUB),
    "UN": Action.REMOVE,
}


def _map_values(value: Any, fn: Callable[[str], str]) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, (MultiValue, list)):
        return [fn(str(v)) for v in value]
    return fn(str(value))


__all__ = ["DeidConfig", "DeidResult", "Deidentifier"]
