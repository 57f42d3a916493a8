"""The ``xraygate`` command line. Each area adds its commands as a Typer sub-app here.

Start-up is kept short (``--help``, ``status``, ``results``: bench/cli_startup.py): the command
modules import heavy libraries (SQLAlchemy models, pynetdicom, TensorFlow) inside the commands,
and help is plain text (no rich import) with real metavars (``--port PORT``, ``PATHS...``).
"""

from __future__ import annotations

from typing import Any

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
    rich_markup_mode=None,
    add_completion=False,
)
core_cli.register(app)
deid_cli.register(app)
gateway_cli.register(app)
model_cli.register(app)
outbox_cli.register(app)


def _metavars(command: Any) -> None:
    """Name each value after its option (``--port PORT``), flags without one, recursively."""
    for param in getattr(command, "params", []):
        if param.metavar is not None:
            continue
        if param.param_type_name == "argument":
            name = (param.name or "value").upper().replace("_", "-")
            param.metavar = name
            usage = (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")
            # Typer would add a Python type (<list[Path]>) and braces ({PATHS}...) to help.
            param.display_type_rich = lambda ctx: None
            param._usage_display_name = lambda usage=usage: usage
        elif not getattr(param, "is_flag", False) and not getattr(param, "count", False):
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = longest.upper()
    for sub in getattr(command, "commands", {}).values():
        _metavars(sub)


def command() -> Any:
    """The click command behind ``app``, with metavars filled in."""
    cmd = typer.main.get_command(app)
    _metavars(cmd)
    return cmd


def main() -> None:
    command()(prog_name="xraygate")
