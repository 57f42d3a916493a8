"""Service commands: serve, scp, worker, db upgrade, status, send, sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from xraygate.core.config import get_settings
from xraygate.core.errors import ConfigurationError, XraygateError

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def run_service(*, scp: bool, workers: bool, http: bool) -> None:
    """``service.run`` with these parts; a configuration refused at start-up (a placeholder
    secret, a short key) is an error message naming the setting, not a traceback."""
    from xraygate import service

    try:
        service.run(get_settings(), scp=scp, workers=workers, http=http)
    except ConfigurationError as exc:
        raise fail(str(exc)) from exc


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
    """Print counts of patients, studies, instances and jobs by state."""
    from xraygate import service

    try:
        counts = service.status_counts(get_settings())
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(counts, indent=2, sort_keys=True))
        return
    for name, value in counts.items():
        typer.echo(f"{name}: {value}")


def send(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files or directories.")],
    host: Annotated[str, typer.Option(help="SCP host.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="SCP port [default: XRAYGATE_DICOM_PORT].")
    ] = None,
    aet: Annotated[
        str | None, typer.Option(help="Called AE title [default: XRAYGATE_AE_TITLE].")
    ] = None,
    calling_aet: Annotated[str, typer.Option(help="Our (calling) AE title.")] = "XRAYGATE_SCU",
) -> None:
    """Send DICOM files with C-STORE (a progress bar shows each instance)."""
    from xraygate.dicom_scp.sender import send_paths

    settings = get_settings()
    try:
        report = send_paths(
            paths,
            host=host,
            port=port or settings.dicom_port,
            called_aet=aet or settings.ae_title,
            calling_aet=calling_aet,
            progress=True,
        )
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"sent: {report.sent}  failed: {report.failed}")
    for path, status_code, comment in report.failures:
        typer.echo(f"  {path}: status 0x{status_code:04X} {comment}", err=True)
    if report.failed:
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
