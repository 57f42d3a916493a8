"""FHIR search over the ``fhir_resources`` table: the query string parsed against the parameter
table (``params``) into SQL, run with paging and ``_include``."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, not_, or_, select
from sqlmodel import Session, col

from xraygate.core.models import FhirResource
from xraygate.gateway.errors import SearchError
from xraygate.gateway.fhir_api.params import (
    DATE_PREFIXES,
    IGNORED,
    INCLUDES,
    REVINCLUDES,
    SEARCH_PARAMS,
    SORTS,
    Param,
    ParamKind,
)

UNSUPPORTED = "not-supported"  # the issue code of a search naming what we do not serve
MAX_ALTERNATIVES = 100  # comma-separated values of one parameter
MAX_PARAMETERS = 50  # query parameters of one search


@dataclass
class Query:
    resource_type: str
    where: list[ColumnElement[bool]]
    count: int
    offset: int
    order: list[Any]
    includes: list[str]
    revincludes: list[str]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: Any, token: str) -> ColumnElement[bool]:
    result: ColumnElement[bool] = column.like(f"%{_like(token)}%", escape="\\")
    return result


def token_clause(column: Any, value: str, prefix: str = "") -> ColumnElement[bool]:
    if "|" not in value:
        return _contains(column, f"|{value}\t")
    system, _, code = value.partition("|")
    if not code:
        return _contains(column, f"\t{prefix}{system}|")
    return _contains(column, f"\t{prefix}{system}|{code}\t")


def normalize_reference(value: str, default_type: str) -> str:
    parts = [p for p in value.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2:
        return f"{parts[-2]}/{parts[-1]}"
    return f"{default_type}/{value}"


# --- dates -----------------------------------------------------------------------------------


def date_range(value: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """The [start, end) interval a FHIR date / dateTime search value stands for."""
    try:
        return _date_range(value, tz)
    except (ValueError, OverflowError) as exc:  # 9999-12-31 has no next day
        raise SearchError(f"invalid date {value!r}") from exc


def _date_range(value: str, tz: tzinfo) -> tuple[datetime, datetime]:
    if len(value) == 4:
        start = datetime(int(value), 1, 1, tzinfo=tz)
        return start, start.replace(year=start.year + 1)
    if len(value) == 7:
        y, m = int(value[:4]), int(value[5:7])
        start = datetime(y, m, 1, tzinfo=tz)
        return start, start + timedelta(days=calendar.monthrange(y, m)[1])
    if len(value) == 10:
        start = datetime.fromisoformat(value).replace(tzinfo=tz)
        return start, start + timedelta(days=1)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    step = timedelta(seconds=1) if value.count(":") >= 2 else timedelta(minutes=1)
    if parsed.microsecond:
        step = timedelta(microseconds=1)
    return parsed, parsed + step


def date_clause(column: Any, raw: str, tz: tzinfo) -> ColumnElement[bool]:
    prefix, value = ("eq", raw)
    if raw[:2] in DATE_PREFIXES:
        prefix, value = raw[:2], raw[2:]
    elif raw[:2].isalpha():
        raise SearchError(f"unsupported date prefix {raw[:2]!r}", code=UNSUPPORTED)
    lo, hi = date_range(value, tz)
    try:
        lo, hi = lo.astimezone(UTC), hi.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise SearchError(f"date out of range {value!r}") from exc
    clauses: dict[str, ColumnElement[bool]] = {
        "eq": and_(column >= lo, column < hi),
        "ne": and_(column.is_not(None), not_(and_(column >= lo, column < hi))),
        "gt": column >= hi,
        "sa": column >= hi,
        "lt": column < lo,
        "eb": column < lo,
        "ge": column >= lo,
        "le": column < hi,
    }
    return clauses[prefix]


# --- building the query ------------------------------------------------------------------------


def _patient_chain(session: Session, value: str) -> list[str]:
    column = col(FhirResource.identifiers)
    rows = session.scalars(
        select(col(FhirResource.resource_id)).where(
            col(FhirResource.resource_type) == "Patient",
            col(FhirResource.is_current).is_(True),
            token_clause(column, value),
        )
    ).all()
    return [f"Patient/{r}" for r in rows]


def param_clause(
    session: Session, name: str, param: Param, modifier: str, value: str, tz: tzinfo
) -> ColumnElement[bool]:
    R = FhirResource  # noqa: N806
    if param.kind == ParamKind.ID:
        return col(R.resource_id) == value
    if param.kind == ParamKind.LAST_UPDATED:
        return date_clause(col(R.last_updated), value, tz)
    if param.kind == ParamKind.DATE:
        return date_clause(col(R.date), value, tz)
    if param.kind == ParamKind.STATUS:
        return col(R.status) == value.rpartition("|")[2]
    if param.kind == ParamKind.TOKEN:
        return token_clause(getattr(R, param.column), value)
    if param.kind == ParamKind.PATIENT:
        if modifier == "identifier":
            refs = _patient_chain(session, value)
            return col(R.patient_ref).in_(refs) if refs else false()
        return col(R.patient_ref) == normalize_reference(value, param.ref_type)
    if param.kind == ParamKind.BASED_ON:
        if modifier == "identifier":
            return token_clause(col(R.based_on), value, prefix="id=")
        ref = normalize_reference(value, param.ref_type)
        return _contains(col(R.based_on), f"\tref={ref}\t")
    if param.kind == ParamKind.REFERENCE:
        ref = normalize_reference(value, param.ref_type)
        return _contains(col(R.refs), f"\t{name}={ref}\t")
    raise SearchError(f"unsupported parameter kind {param.kind}", code=UNSUPPORTED)


def parse_query(
    session: Session,
    resource_type: str,
    items: list[tuple[str, str]],
    tz: tzinfo,
    *,
    strict: bool = True,
) -> Query:
    params = SEARCH_PARAMS[resource_type]
    R = FhirResource  # noqa: N806
    where: list[ColumnElement[bool]] = [
        col(R.resource_type) == resource_type,
        col(R.is_current).is_(True),
    ]
    count, offset, includes, revincludes = 20, 0, [], []
    order: list[Any] = [col(R.last_updated).desc()]
    if len(items) > MAX_PARAMETERS:
        raise SearchError(f"more than {MAX_PARAMETERS} search parameters", code="too-costly")
    for key, value in items:
        if key in IGNORED:
            continue
        if key == "_count":
            count = _int(key, value, 0, 1000)
        elif key == "_offset":
            offset = _int(key, value, 0, 10**9)
        elif key == "_total":
            continue
        elif key == "_summary":
            if value != "count":
                detail = f"unsupported _summary {value!r} (only 'count')"
                raise SearchError(detail, code=UNSUPPORTED)
            count = 0
        elif key == "_sort":
            order = _sort(value)
        elif key == "_include":
            if value not in INCLUDES or INCLUDES[value][0] != resource_type:
                raise SearchError(f"unsupported _include {value!r}", code=UNSUPPORTED)
            includes.append(value)
        elif key == "_revinclude":
            if value not in REVINCLUDES:
                raise SearchError(f"unsupported _revinclude {value!r}", code=UNSUPPORTED)
            revincludes.append(value)
        else:
            clause = _search_clause(session, params, key, value, tz, strict)
            if clause is not None:
                where.append(clause)
    order.append(col(R.id).desc())
    return Query(resource_type, where, count, offset, order, includes, revincludes)


def _search_clause(
    session: Session,
    params: dict[str, Param],
    key: str,
    value: str,
    tz: tzinfo,
    strict: bool,
) -> ColumnElement[bool] | None:
    name, _, modifier = key.partition(":")
    if "." in name:  # chain: patient.identifier / subject.identifier
        name, _, chained = name.partition(".")
        if chained != "identifier" or modifier:
            return _unknown(key, strict)
        modifier = "identifier"
    param = params.get(name)
    if param is None:
        return _unknown(key, strict)
    chainable = (ParamKind.PATIENT, ParamKind.BASED_ON)
    if modifier and not (modifier == "identifier" and param.kind in chainable):
        return _unknown(key, strict)
    alternatives = [v for v in value.split(",") if v]
    if not alternatives:
        raise SearchError(f"empty value for {key}")
    if len(alternatives) > MAX_ALTERNATIVES:
        detail = f"more than {MAX_ALTERNATIVES} alternatives for {key}"
        raise SearchError(detail, code="too-costly")
    return or_(*(param_clause(session, name, param, modifier, v, tz) for v in alternatives))


def _unknown(key: str, strict: bool) -> ColumnElement[bool] | None:
    """Refuse an unknown parameter, or ignore it (None) under ``Prefer: handling=lenient``."""
    if strict:
        raise SearchError(f"unsupported search parameter {key!r}", code=UNSUPPORTED)
    return None


def _int(key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise SearchError(f"{key} must be an integer") from exc
    return max(low, min(high, number))


def _sort(value: str) -> list[Any]:
    out: list[Any] = []
    items = value.split(",")
    if len(items) > len(SORTS):
        raise SearchError(f"more than {len(SORTS)} _sort keys", code="too-costly")
    for item in items:
        desc = item.startswith("-")
        column = SORTS.get(item.lstrip("-"))
        if column is None:
            raise SearchError(f"unsupported _sort {item!r}", code=UNSUPPORTED)
        c = getattr(FhirResource, column)
        out.append(c.desc() if desc else c.asc())
    return out


def run_search(session: Session, query: Query) -> tuple[int, list[dict[str, Any]]]:
    base: Select[Any] = select(func.count()).select_from(FhirResource).where(*query.where)
    total = int(session.scalar(base) or 0)
    if query.count == 0:
        return total, []
    page = (
        select(col(FhirResource.content))
        .where(*query.where)
        .order_by(*query.order)
        .limit(query.count)
        .offset(query.offset)
    )
    return total, [dict(c) for c in session.scalars(page)]


def included(session: Session, query: Query, matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    wanted: dict[str, set[str]] = {}
    for name in query.includes:
        path = INCLUDES[name][1]
        for resource in matches:
            value = resource.get(path)
            for ref in value if isinstance(value, list) else [value] if value else []:
                rtype, _, rid = str(ref.get("reference", "")).partition("/")
                if rid:
                    wanted.setdefault(rtype, set()).add(rid.split("/")[0])
    out: list[dict[str, Any]] = []
    for rtype, ids in sorted(wanted.items()):
        rows = session.scalars(
            select(col(FhirResource.content)).where(
                col(FhirResource.resource_type) == rtype,
                col(FhirResource.resource_id).in_(sorted(ids)),
                col(FhirResource.is_current).is_(True),
            )
        )
        out.extend(dict(r) for r in rows)
    return out


def revincluded(
    session: Session, query: Query, matches: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The current resources whose ``_revinclude`` reference points at a matched resource."""
    out: list[dict[str, Any]] = []
    for name in query.revincludes:
        rtype, param = REVINCLUDES[name]
        tokens = [f"\t{param}={m['resourceType']}/{m['id']}\t" for m in matches]
        if not tokens:
            continue
        rows = session.scalars(
            select(col(FhirResource.content))
            .where(
                col(FhirResource.resource_type) == rtype,
                col(FhirResource.is_current).is_(True),
                or_(*(_contains(col(FhirResource.refs), t) for t in tokens)),
            )
            .order_by(col(FhirResource.id))
        )
        out.extend(dict(r) for r in rows)
    return out
