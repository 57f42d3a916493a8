"""The Basic Application Level Confidentiality Profile and its options, from DICOM PS3.15 Table
E.1-1 shipped as data (``data/annex_e_table.csv``, edition 2026c).

:func:`build_profile` turns a set of :class:`Option` into one ``tag -> action`` dict, computed once
per option set and cached. Each row's action is the Basic action unless an enabled option's column
overrides it (an option's action always wins, PS3.15 E.3). Compound actions need the attribute's
Type in the IOD of the SOP Class (PS3.3); without IOD tables we resolve them to a choice that keeps
any IOD valid and leaks nothing:

- ``X/Z``: ``Z`` (an empty value is valid for Type 2 and 3 alike);
- ``X/D``, ``X/Z/D``, ``Z/D``: ``D`` for values (a dummy is valid for every Type); for a
  sequence ``X`` for the ``X/...`` codes (these sequences are Type 3 in image IODs) and an empty
  dummy item for ``D``/``Z/D``;
- ``X/Z/U*``: keep the (reference) sequence and replace every UID inside it (``U``).

Attributes the table does not list are handled by VR (the table's own recommendation): DA/DT/TM
follow the Retain Longitudinal rows (removed, kept or shifted); PN is removed; UI is replaced
unless it is a well-known registry UID; free text (LT/ST/UT/UC) is scrubbed; attributes unknown to
the data dictionary are removed; everything else is kept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from importlib import resources

from pydicom.sr.codedict import codes

from xraygate.core.errors import ConfigurationError

TABLE_FILE = "annex_e_table.csv"


class Option(StrEnum):
    """The options of PS3.15 E.3; values are the CLI/settings spelling."""

    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_LONG_FULL_DATES = "retain-long-full-dates"
    RETAIN_LONG_MODIFIED_DATES = "retain-long-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"


# CSV column of each option (order of Table E.1-1).
COLUMNS: dict[Option, str] = {
    Option.RETAIN_SAFE_PRIVATE: "retain_safe_private",
    Option.RETAIN_UIDS: "retain_uids",
    Option.RETAIN_DEVICE_IDENTITY: "retain_device_identity",
    Option.RETAIN_INSTITUTION_IDENTITY: "retain_institution_identity",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "retain_patient_characteristics",
    Option.RETAIN_LONG_FULL_DATES: "retain_long_full_dates",
    Option.RETAIN_LONG_MODIFIED_DATES: "retain_long_modified_dates",
    Option.CLEAN_DESCRIPTORS: "clean_descriptors",
    Option.CLEAN_STRUCTURED_CONTENT: "clean_structured_content",
    Option.CLEAN_GRAPHICS: "clean_graphics",
}

_CID = codes.cid7050
# CID 7050 codes, taken from pydicom's copy of the code list (never hand-copied numbers).
OPTION_CODES = {
    Option.RETAIN_SAFE_PRIVATE: _CID.RetainSafePrivateOption,
    Option.RETAIN_UIDS: _CID.RetainUidsOption,
    Option.RETAIN_DEVICE_IDENTITY: _CID.RetainDeviceIdentityOption,
    Option.RETAIN_INSTITUTION_IDENTITY: _CID.RetainInstitutionIdentityOption,
    Option.RETAIN_PATIENT_CHARACTERISTICS: _CID.RetainPatientCharacteristicsOption,
    Option.RETAIN_LONG_FULL_DATES: _CID.RetainLongitudinalTemporalInformationFullDatesOption,
    Option.RETAIN_LONG_MODIFIED_DATES: (
        _CID.RetainLongitudinalTemporalInformationModifiedDatesOption
    ),
    Option.CLEAN_DESCRIPTORS: _CID.CleanDescriptorsOption,
    Option.CLEAN_STRUCTURED_CONTENT: _CID.CleanStructuredContentOption,
    Option.CLEAN_GRAPHICS: _CID.CleanGraphicsOption,
}
BASIC_CODE = _CID.BasicApplicationConfidentialityProfile
CLEAN_PIXEL_CODE = _CID.CleanPixelDataOption

#: The action codes of Table E.1-1, compound ones included (resolved to an :class:`Action`).
VALID_ACTIONS = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


class Action(StrEnum):
    """What happens to one element: a resolved PS3.15 action, or one of our two for attributes
    the table does not list. Values are the table's letters."""

    REMOVE = "X"
    EMPTY = "Z"  # a zero-length value (an empty sequence)
    DUMMY = "D"  # a dummy value of the VR (one empty item for a sequence)
    KEEP = "K"  # the value as it is (every item of a sequence walked)
    CLEAN = "C"  # a value of similar meaning that identifies nobody
    UID = "U"  # a pseudonymous UID, the same for the same input
    MAYBE_UID = "UI?"  # unlisted UI: a pseudonymous UID unless it is a well-known registry UID
    SCRUB = "S"  # unlisted free text: identifying terms removed


@dataclass(frozen=True)
class Row:
    tag: str  # "(GGGG,EEEE)", lower-case x for repeating groups
    keyword: str
    basic: str
    options: dict[Option, str]


@dataclass
class Profile:
    """Resolved actions for one option set.

    ``actions`` maps a tag to ``X``/``Z``/``D``/``K``/``C``/``U`` for values; ``seq_actions`` holds
    the action for the same tag when its element is a sequence (``X``, ``Z``, ``D`` = one empty
    item, ``K`` = walk the items, ``C`` = walk the items and scrub their free text).
    """

    options: frozenset[Option]
    actions: dict[int, Action]
    seq_actions: dict[int, Action]
    curve_action: Action  # for every element of groups 50xx
    overlay_data_action: Action  # (60xx,3000)
    overlay_comments_action: Action  # (60xx,4000)
    private_action: Action  # X, or C = keep only the safe-private list
    date_action: Action  # for DA/DT/TM attributes the table does not list
    codes: list[tuple[str, str]] = field(default_factory=list)  # (value, meaning) of CID 7050

    @property
    def modified_dates(self) -> bool:
        return Option.RETAIN_LONG_MODIFIED_DATES in self.options

    @property
    def temporal_status(self) -> str:
        """The value of LongitudinalTemporalInformationModified (0028,0303)."""
        if Option.RETAIN_LONG_FULL_DATES in self.options:
            return "UNMODIFIED"
        if self.modified_dates:
            return "MODIFIED"
        return "REMOVED"


@lru_cache(maxsize=1)
def load_table() -> tuple[Row, ...]:
    """The rows of Table E.1-1 from the packaged CSV, validated."""
    text = resources.files("xraygate.anonymizer").joinpath("data", TABLE_FILE).read_text("utf-8")
    rows = []
    for rec in csv.DictReader(text.splitlines()):
        opts = {opt: rec[col] for opt, col in COLUMNS.items() if rec[col]}
        for action in (rec["basic_action"], *opts.values()):
            if action not in VALID_ACTIONS:
                raise ConfigurationError(f"Annex E table row {rec['tag']}: bad action {action!r}")
        rows.append(Row(rec["tag"], rec["keyword"], rec["basic_action"], opts))
    return tuple(rows)


def parse_options(names: list[str] | tuple[str, ...]) -> frozenset[Option]:
    """Options from their spellings; the two Retain Longitudinal options exclude each other."""
    try:
        opts = frozenset(Option(name.strip().lower()) for name in names if name.strip())
    except ValueError as exc:
        known = ", ".join(o.value for o in Option)
        raise ConfigurationError(
            f"unknown de-identification option ({exc}); known: {known}"
        ) from None
    if {Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES} <= opts:
        raise ConfigurationError(
            "retain-long-full-dates and retain-long-modified-dates exclude each other"
        )
    return opts


def _effective(row: Row, options: frozenset[Option]) -> str:
    action = row.basic
    for opt in COLUMNS:  # an enabled option's action overrides the Basic one
        if opt in options and opt in row.options:
            action = row.options[opt]
    return action


def _resolve_value(action: str) -> Action:
    return Action(
        {"X/Z": "Z", "X/D": "D", "X/Z/D": "D", "Z/D": "D", "X/Z/U*": "U"}.get(action, action)
    )


def _resolve_seq(action: str) -> Action:
    return Action(
        {
            "X/Z": "Z",
            "X/D": "X",
            "X/Z/D": "X",
            "Z/D": "D",
            "X/Z/U*": "K",  # keep, the UIDs inside are replaced by their own rows
            "U": "K",
        }.get(action, action)
    )


def _tag(text: str) -> int:
    return int(text[1:5] + text[6:10], 16)


@lru_cache(maxsize=32)
def build_profile(options: frozenset[Option]) -> Profile:
    """The resolved profile for an option set (cached: built once per set)."""
    actions: dict[int, Action] = {}
    seq_actions: dict[int, Action] = {}
    special: dict[str, str] = {}
    for row in load_table():
        action = _effective(row, options)
        if "x" in row.tag or "g" in row.tag:
            special[row.tag] = action
            continue
        tag = _tag(row.tag)
        actions[tag] = _resolve_value(action)
        seq_actions[tag] = _resolve_seq(action)
    if Option.RETAIN_LONG_FULL_DATES in options:
        date_action = Action.KEEP
    elif Option.RETAIN_LONG_MODIFIED_DATES in options:
        date_action = Action.CLEAN
    else:
        date_action = Action.REMOVE
    profile_codes = [(BASIC_CODE.value, BASIC_CODE.meaning)]
    profile_codes += [
        (OPTION_CODES[o].value, OPTION_CODES[o].meaning) for o in Option if o in options
    ]
    return Profile(
        options=options,
        actions=actions,
        seq_actions=seq_actions,
        curve_action=Action(special["(50xx,xxxx)"]),
        overlay_data_action=Action(special["(60xx,3000)"]),
        overlay_comments_action=Action(special["(60xx,4000)"]),
        private_action=Action(special["(gggg,eeee)"]),
        date_action=date_action,
        codes=sorted(profile_codes),
    )
