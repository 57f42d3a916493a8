"""Logging set-up: plain or JSON lines, with a correlation id and no PHI.

Log calls across xraygate never include patient names, IDs, dates or UIDs. Where a log line
needs to say which study it is about, it carries :func:`correlation_id` of the Study Instance
UID: a short one-way hash that links log lines of one study without revealing it.

Libraries do not follow that rule: SQLAlchemy puts the SQL parameters (patient identifiers) in
its errors, database drivers echo key values, pydicom warns with the offending value, an HL7
parser quotes the segment. :class:`PhiFilter`, on the one handler every record goes through
(plain and JSON), rewrites each record's message, traceback and stack with :func:`scrub`
before it is formatted; Python warnings are routed into logging so they pass it too. The same
:func:`scrub` keeps values out of dead-letter reasons (``core/worker.py``).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import sys
from datetime import UTC, datetime

from xraygate.core.config import Settings

_correlation: contextvars.ContextVar[str] = contextvars.ContextVar("correlation", default="-")


def correlation_id(study_uid: str) -> str:
    """A short, one-way id for a study, safe for logs."""
    return hashlib.sha256(study_uid.encode()).hexdigest()[:12]


def set_correlation(value: str) -> contextvars.Token[str]:
    return _correlation.set(value)


REDACTED = "<redacted>"

#: (pattern, replacement), applied in order. Each removes a kind of value, never the words
#: around it, so a scrubbed line still says what went wrong.
_SCRUBS: list[tuple[re.Pattern[str], str]] = [
    # SQLAlchemy: "[parameters: (...)]" / "[parameters: {...}]" / "[parameters: [...]]"
    (
        re.compile(r"\[parameters: .*?\](?=\s*(?:\n|\(Background|$))", re.S),
        f"[parameters: {REDACTED}]",
    ),
    # PostgreSQL DETAIL: Key (patient_key)=(HOSP|MRN123) already exists / Failing row contains (...)
    (re.compile(r"\)=\((.*?)\)(?= already exists| is not present|\.|\s|$)"), f")=({REDACTED})"),
    (re.compile(r"(Failing row contains )\(.*?\)(?=\.?\s*$)", re.M), rf"\1({REDACTED})"),
    # HL7 v2 segments quoted by a parser or peer: keep the segment name only
    (
        re.compile(r"\b(MSH|PID|PD1|PV1|NK1|ORC|OBR|OBX|NTE|MSA|ERR|EVN)\|[^\r\n'\"]*"),
        rf"\1|{REDACTED}",
    ),
    # DICOM element dumps and pydicom messages: "(0010,0010) Patient's Name  PN: 'DOE^JANE'"
    (
        re.compile(
            r"\b(AE|AS|CS|DA|DS|DT|IS|LO|LT|PN|SH|ST|TM|UI|UT|UC|UR|SQ|OB|OW|UN)(\s*[:=]\s*)[^\n]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # anything quoted: values in driver, pydicom, pydantic and HTTP peer messages
    (re.compile(r"'(?:[^'\\\n]|\\.){1,}'"), f"'{REDACTED}'"),
    (re.compile(r'(?<!File )"(?:[^"\\\n]|\\.){1,}"'), f'"{REDACTED}"'),  # not traceback paths
    # person names and HL7 components: any word with a ^ (DOE^JANE, MRN123^^^HOSP)
    (re.compile(r"[^\s'\"()\[\]{},;|]*\^[^\s'\"()\[\]{},;|]*"), REDACTED),
    # DICOM UIDs (study, series, instance): dotted digit strings, not IPv4 addresses (four parts
    # of up to three digits: a listening address such as 0.0.0.0 stays readable)
    (
        re.compile(
            r"\b(?!(?:\d{1,3}\.){3}\d{1,3}\b(?![.\d]))[0-2](?:\.(?:0|[1-9]\d*)){3,}\b"
            r"|\b2\.25\.\d{6,}\b"  # UUID-derived UIDs have only three parts
        ),
        "<uid>",
    ),
    # identifier-like words: letters and 4+ digits, with an uppercase or g-z letter (MRN7734119,
    # ACC99182, SN884422X); lowercase hex (correlation ids, digests, UUIDs) stays readable
    (
        re.compile(
            r"(?<![\w<])(?!0x)(?=[\w-]*(?:[A-Z]|[g-z]))(?=(?:[A-Za-z_-]*\d){4})[A-Za-z0-9][\w-]{3,}"
        ),
        REDACTED,
    ),
    # an identifier named in prose: "patient id MRN123", "accession number: A77", "MRN=9"
    (
        re.compile(
            r"(\b(?:patient[ _]?(?:id|name)|accession(?:[ _]?number)?|mrn|issuer)\b\s*[:=]?\s*)"
            r"(?!<)[^\s,;()]+",
            re.I,
        ),
        rf"\1{REDACTED}",
    ),
]


def scrub(text: str) -> str:
    """``text`` with DICOM / SQL / HL7 values replaced by ``<redacted>`` (see ``_SCRUBS``)."""
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


class PhiFilter(logging.Filter):
    """Scrubs every record's message, traceback and stack before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_phi_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep its template, drop the arguments
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._phi_scrubbed = True
        return True


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", "-"),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        if record.exc_text:
            entry["exc"] = record.exc_text  # scrubbed by PhiFilter
        return json.dumps(entry)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(PhiFilter())
    handler.addFilter(_ContextFilter())
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # pynetdicom logs dataset contents at DEBUG; keep it quiet so no PHI reaches the logs.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # warnings (pydicom's name the offending value) become log records, scrubbed like the rest
    logging.captureWarnings(True)
