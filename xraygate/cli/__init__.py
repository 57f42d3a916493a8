"""The ``xraygate`` command line. Each area adds its commands as a Typer sub-app here."""

from __future__ import annotations

import typer

from xraygate.cli import core as core_cli
from xraygate.cli import deid as deid_cli
from xraygate.cli import gateway as gateway_cli
from xraygate.cli import model as model_cli
from xraygate.cli import outbox as outbox_cli

app = typer.Typer(
    name="xraygate",
    help="AI triage of chest X-rays: DICOM in, FHIR R4 and HL7 v2 out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
core_cli.register(app)
deid_cli.register(app)
gateway_cli.register(app)
model_cli.register(app)
outbox_cli.register(app)


def main() -> None:
    app()
