"""Logging set-up: plain or JSON lines, with a correlation id and no PHI.

Log calls across xraygate never include patient names, IDs, dates or UIDs. Where a log line
needs to say which study it is about, it carries :func:`correlation_id` of the Study Instance
UID: a short one-way hash that links log lines of one study without revealing it.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import sys
from datetime import UTC, datetime

from xraygate.core.config import Settings

_correlation: contextvars.ContextVar[str] = contextvars.ContextVar("correlation", default="-")


def correlation_id(study_uid: str) -> str:
    """A short, one-way id for a study, safe for logs."""
    return hashlib.sha256(study_uid.encode()).hexdigest()[:12]


def set_correlation(value: str) -> contextvars.Token[str]:
    return _correlation.set(value)


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
        return json.dumps(entry)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
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
