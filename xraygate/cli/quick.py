"""The read-only queries of ``xraygate status`` and ``xraygate results`` on the bare database
driver, so that these commands start in a fraction of a second (issue 12, bench/cli_startup.py).

Loading SQLAlchemy's ORM, SQLModel, every table and Alembic costs most of a second before the
first query; these two commands only count rows and list recent results. Here they run on the
DB-API driver (the stdlib ``sqlite3``, or ``psycopg`` for PostgreSQL), with the same SQL the ORM
would send and the same conversions of what comes back (UTC datetimes, booleans).

Every function returns ``None`` when the quick path does not apply: the database file does not
exist yet, the schema is not at the head revision, another driver, or any driver error. The caller
then takes the full path (:mod:`xraygate.cli.database`: migrate if needed, ORM queries), so a new
install, a pending migration and every error message behave exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from xraygate.core.states import JobState

if TYPE_CHECKING:
    from xraygate.core.config import Settings

T = TypeVar("T")
INDEX_TABLES = ("patients", "studies", "series", "instances")
_RESULTS_SQL = (
    "SELECT r.study_instance_uid, s.accession_number, r.score, r.category, r.model_version,"
    " r.shadow, r.revision, r.reason, r.demo_model, r.updated_at"
    " FROM study_results r JOIN studies s ON s.id = r.study_pk"
    " ORDER BY r.updated_at DESC LIMIT {p}"
)


class _Unavailable(Exception):
    """The quick path does not apply (the caller takes the full one)."""


@contextmanager
def _connect(url: str) -> Iterator[tuple[Any, str]]:
    """A DB-API connection to ``url`` and its parameter marker (``?`` or ``%s``)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path or path == ":memory:" or "?" in path or not Path(path).is_file():
            raise _Unavailable  # a new file is created (0600) and migrated by the full path
        import sqlite3

        sqlite = sqlite3.connect(path, timeout=30)
        try:
            yield sqlite, "?"
        finally:
            sqlite.close()
        return
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgresql+psycopg"):
        raise _Unavailable
    import psycopg

    with psycopg.connect(f"postgresql://{rest}", autocommit=True) as pg:
        yield pg, "%s"


def _at_head(conn: Any) -> bool:
    from xraygate.cli.database import MIGRATIONS_VERSIONS, script_heads

    cur = conn.cursor()
    cur.execute("SELECT version_num FROM alembic_version")
    stored = {str(row[0]) for row in cur.fetchall()}
    return bool(stored) and stored == script_heads(MIGRATIONS_VERSIONS)


def _run(settings: Settings, query: Callable[[Any, str], T]) -> T | None:
    """``query(connection, marker)`` on a database at head; None where the quick path fails."""
    try:
        with _connect(settings.resolved_database_url) as (conn, marker):
            if not _at_head(conn):
                return None
            return query(conn, marker)
    except Exception:  # a driver error, or _Unavailable: the full path decides
        return None


def _counts(conn: Any, _marker: str) -> dict[str, int]:
    cur = conn.cursor()
    counts: dict[str, int] = {}
    for table in INDEX_TABLES:
        cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608  (fixed table names)
        counts[table] = int(cur.fetchone()[0] or 0)
    cur.execute("SELECT state, count(*) FROM jobs GROUP BY state")
    by_state = {str(state): int(n) for state, n in cur.fetchall()}
    for state in JobState:
        counts[f"jobs_{state.value}"] = by_state.get(state.value, 0)
    return counts


def status_counts(settings: Settings) -> dict[str, int] | None:
    """What :func:`xraygate.cli.core.status_counts` returns, or None (take the full path)."""
    return _run(settings, _counts)


def utc(value: datetime | str) -> datetime:
    """A stored timestamp as SQLModel's ``UTCDateTime`` returns it: aware, in UTC (SQLite keeps
    the text ``YYYY-MM-DD HH:MM:SS.ffffff`` without an offset, meaning UTC)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.utcoffset() is None else when.astimezone(UTC)


def _result(row: Sequence[Any]) -> dict[str, Any]:
    uid, acc, score, category, model, shadow, revision, reason, demo, updated = row
    return {
        "study_instance_uid": uid,
        "accession_number": acc,
        "score": None if score is None else float(score),
        "category": category,
        "model_version": model,
        "shadow": bool(shadow),
        "revision": int(revision),
        "reason": reason,
        "demo_model": bool(demo),
        "updated_at": utc(updated).isoformat(),
    }


def _results(limit: int) -> Callable[[Any, str], tuple[list[dict[str, Any]], list[Any]]]:
    def query(conn: Any, marker: str) -> tuple[list[dict[str, Any]], list[Any]]:
        cur = conn.cursor()
        cur.execute(_RESULTS_SQL.format(p=marker), (limit,))
        data = [_result(row) for row in cur.fetchall()]
        uids = sorted({item["study_instance_uid"] for item in data})
        messages: list[Any] = []
        if uids:
            cur.execute(
                "SELECT study_uid, channel, state FROM delivery_outbox WHERE study_uid IN"  # noqa: S608
                f" ({', '.join([marker] * len(uids))})",
                uids,
            )
            messages = [(str(u), str(c), str(s)) for u, c, s in cur.fetchall()]
        return data, messages

    return query


def results_data(settings: Settings, limit: int) -> list[dict[str, Any]] | None:
    """What :func:`xraygate.cli.model.results_data` returns, or None (take the full path)."""
    from xraygate.core import delivery_state

    found = _run(settings, _results(limit))
    if found is None:
        return None
    data, messages = found
    uids = sorted({item["study_instance_uid"] for item in data})
    delivery = delivery_state.from_rows(settings, uids, messages)
    for item in data:
        item["delivery"] = {k: v.value for k, v in delivery[item["study_instance_uid"]].items()}
    return data
