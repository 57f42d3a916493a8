"""What ``xraygate serve`` says when it starts: one block (version, data dir, DICOM, HTTP, the
active model, database and store kinds, which outputs are on, the next command to try), and
third-party start-up noise silenced or routed once through our logging."""

from __future__ import annotations

import logging
import os
import warnings

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from xraygate import __version__
from xraygate.core import delivery_state
from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.errors import XraygateError
from xraygate.core.models.results import emitting_version

log = logging.getLogger("xraygate.service")


def quiet_third_party() -> None:
    """Call before TensorFlow or matplotlib load (environment variables are read at import).

    - TensorFlow's C++ INFO/WARNING lines (oneDNN, CPU features, absl) are not printed;
    - matplotlib (font cache), absl and alembic (one line per migration) speak only on errors;
    - Python warnings (pydicom's included) go through logging; pydicom logs each one *and*
      warns it, so its own logger is held to errors and every warning appears once.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("matplotlib", "absl", "h5py", "PIL", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each distinct warning once per place, not per call


def database_kind(url: str) -> str:
    """``sqlite <path>`` or ``postgresql <host/db>`` (never a password)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"sqlite {parsed.database or ':memory:'}"
    where = f"{parsed.host or 'localhost'}{':' + str(parsed.port) if parsed.port else ''}"
    return f"{backend} {where}/{parsed.database or ''}"


def store_kind(settings: Settings) -> str:
    url = settings.resolved_storage_url
    if url.startswith("s3://"):
        endpoint = settings.s3_endpoint_url or "AWS"
        return f"S3 {url} ({endpoint})"
    return f"local directory {url}"


def _model_line(settings: Settings, engine: Engine | None) -> str:
    if engine is None:
        return "(no database)"
    try:
        with read_session(engine) as session:
            version = emitting_version(session, settings.model_policy)
    except (XraygateError, SQLAlchemyError):  # the block is information: never a reason to die
        return "unknown (the database did not answer at start-up)"
    if version is None:
        return "none active: results wait (xraygate model list / model activate NAME:VERSION)"
    demo = " - DEMONSTRATION model, not for clinical use" if version.manifest.get("demo") else ""
    return f"{version.label} ({settings.model_policy}){demo}"


def http_url(settings: Settings) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}"


def block(
    settings: Settings,
    *,
    engine: Engine | None,
    scp_port: int | None,
    http: bool,
    workers: bool,
) -> str:
    """The start-up block as lines of text (no PHI: settings and the model only)."""
    url = http_url(settings)
    rows: list[tuple[str, str]] = [
        ("data dir", str(settings.data_dir.resolve())),
        (
            "DICOM SCP",
            f"AE {settings.ae_title} on {settings.dicom_host}:{scp_port}" if scp_port else "off",
        ),
        ("HTTP", f"{url}  (worklist {url}/worklist, API docs {url}/docs)" if http else "off"),
        ("workers", f"{max(1, settings.workers)} threads" if workers else "off"),
        ("model", _model_line(settings, engine)),
        ("database", database_kind(settings.resolved_database_url)),
        ("object store", store_kind(settings)),
    ]
    for label, target, hint in delivery_state.outputs(settings):
        rows.append((label, f"on -> {target}" if target else f"off (set {hint})"))
    if http:
        rows.append(("FHIR API", f"on at {url}/fhir (pull; token: xraygate token create)"))
    width = max(len(name) for name, _ in rows)
    lines = [f"xraygate {__version__} is up"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    if scp_port:
        port = "" if scp_port == 11112 else f" --port {scp_port}"
        lines.append(f'  next: xraygate send{port} "$(xraygate sample)"   then: xraygate results')
    return "\n".join(lines)
