"""Service commands: serve, scp, worker, db upgrade, status, send, sample."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from xraygate.core.errors import ConfigurationError, XraygateError

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def run_service(*, scp: bool, workers: bool, http: bool) -> None:
    """``service.run`` with these parts; a configuration refused at start-up (a placeholder
    secret, a short key) is an error message naming the setting, not a traceback."""
    from xraygate import service
    from xraygate.core.config import get_settings

    try:
        service.run(get_settings(), scp=scp, workers=workers, http=http)
    except ConfigurationError as exc:
        raise fail(str(exc)) from exc
    except XraygateError as exc:  # e.g. the database stayed unreachable: one line, no traceback
        raise fail(str(exc).splitlines()[0]) from exc


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(scp)
    app.command()(worker)
    app.command()(status)
    app.command()(send)
    app.command()(sample)
    app.command("settings-doc")(settings_doc)
    app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema (keeps existing data)."""
    from xraygate.core import db
    from xraygate.core.config import get_settings

    settings = get_settings()
    try:
        db.upgrade(settings.resolved_database_url)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"database at revision {db.current_revision(settings.resolved_database_url)}")


def serve(
    http: Annotated[bool, typer.Option(help="Also serve the HTTP gateway.")] = True,
) -> None:
    """Run everything in one process: DICOM SCP, workers and the HTTP gateway."""
    run_service(scp=True, workers=True, http=http)


def scp() -> None:
    """Run only the DICOM SCP (split deployments)."""
    run_service(scp=True, workers=False, http=False)


def worker() -> None:
    """Run only the queue workers (split deployments)."""
    run_service(scp=False, workers=True, http=False)


def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts of patients, studies, series, instances and of jobs by state."""
    from xraygate.cli import quick
    from xraygate.core.config import get_settings

    settings = get_settings()
    try:
        counts = quick.status_counts(settings) or status_counts(settings)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(counts, indent=2, sort_keys=True))
        return
    width = max(len(name) for name in counts) + 1
    for name, value in counts.items():
        typer.echo(f"{name + ':':<{width}} {value:>6}")


def status_counts(settings: Any) -> dict[str, int]:
    """Index rows and jobs by state (every state present, zero when none), through the ORM
    (migrating first if needed); :func:`xraygate.cli.quick.status_counts` is the quick path."""
    from sqlalchemy import func, select
    from sqlmodel import col

    from xraygate.cli import database
    from xraygate.core import db
    from xraygate.core.models import Instance, Job, JobState, Patient, Series, Study

    engine = database.engine(settings)
    counts: dict[str, int] = {}
    with db.read_session(engine) as session:
        for name, model in (
            ("patients", Patient),
            ("studies", Study),
            ("series", Series),
            ("instances", Instance),
        ):
            counts[name] = int(session.scalar(select(func.count()).select_from(model)) or 0)
        by_state = dict(
            session.execute(select(col(Job.state), func.count()).group_by(col(Job.state))).all()
        )
    for state in JobState:
        counts[f"jobs_{state.value}"] = int(by_state.get(state.value, 0))
    return counts


def send(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files or directories.")],
    host: Annotated[str, typer.Option(help="SCP host.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="SCP port.  [default: XRAYGATE_DICOM_PORT, 11112]")
    ] = None,
    aet: Annotated[
        str | None, typer.Option(help="Called AE title.  [default: XRAYGATE_AE_TITLE, XRAYGATE]")
    ] = None,
    calling_aet: Annotated[str, typer.Option(help="Our (calling) AE title.")] = "XRAYGATE_SCU",
) -> None:
    """Send DICOM files with C-STORE: a line per file, then a summary.

    Exit code 0 when every file was stored, 1 when some were not, 2 when the peer could not be
    reached or refused the association."""
    from xraygate.core.config import get_settings
    from xraygate.dicom_scp.sender import send_paths, stored

    def line(path: Path, status_code: int, comment: str) -> None:
        if status_code == 0:
            typer.echo(f"stored        {path}")
        elif stored(status_code):
            typer.echo(
                f"stored 0x{status_code:04X}  {path}  (warning{': ' + comment if comment else ''})"
            )
        else:
            typer.echo(f"FAILED 0x{status_code:04X}  {path}: {comment or 'refused'}")

    settings = get_settings()
    # pydicom warns (and logs) about each odd header; the per-file lines say what matters.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    try:
        report = send_paths(
            paths,
            host=host,
            port=port or settings.dicom_port,
            called_aet=aet or settings.ae_title,
            calling_aet=calling_aet,
            on_result=line,
        )
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"sent: {report.sent}  failed: {report.failed}")
    if report.failed:
        typer.echo(
            f"{report.failed} of {report.sent + report.failed} files were not stored", err=True
        )
        raise typer.Exit(code=1)


def sample(
    name: Annotated[str, typer.Argument(help="Sample file name.")] = "RG1_UNCR.dcm",
) -> None:
    """Print the path of a bundled sample (from the installed pydicom-data wheel)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise fail(f"no sample named {name}")
    typer.echo(str(path))


def settings_doc(
    readme: Annotated[Path | None, typer.Option(help="Rewrite this README's table.")] = None,
) -> None:
    """Print the configuration table (markdown), or update it inside a README."""
    from xraygate.core.settings_doc import render_readme, settings_table

    if readme is None:
        typer.echo(settings_table())
        return
    readme.write_text(render_readme(readme.read_text()))
    typer.echo(f"updated {readme}")
