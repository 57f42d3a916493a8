"""Delivery commands: ``xraygate outbox list|retry|dead-letters``.

Output carries no PHI: messages are shown by id, channel, sequence, state and control ID, with
the study as a correlation id.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xraygate.cli.core import fail
from xraygate.core.config import get_settings
from xraygate.core.errors import XraygateError
from xraygate.core.jobs import DELIVERY_KINDS
from xraygate.core.logging import correlation_id
from xraygate.core.models import Job, OutboxMessage
from xraygate.core.outbox import list_messages, retry_message
from xraygate.core.queue import JobQueue

outbox_app = typer.Typer(
    help="Result deliveries (HL7, FHIR push, escalation).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(outbox_app, name="outbox")


def _queue() -> JobQueue:
    return JobQueue.from_settings(get_settings(), migrate=True)


def _row(m: OutboxMessage) -> dict[str, object]:
    return {
        "id": m.id,
        "channel": m.channel,
        "seq": m.seq,
        "state": m.state,
        "attempts": m.attempts,
        "control_id": m.control_id,
        "study": correlation_id(m.study_uid),
        "priority": m.priority,
        "created_at": m.created_at.isoformat(timespec="seconds"),
        "last_error": m.last_error or "",
    }


def _print(rows: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>6} {r['channel']:<18} seq {r['seq']:<4} {r['state']:<9} "
            f"tries {r['attempts']:<3} {r['control_id']} {r['last_error']}"
        )


@outbox_app.command("list")
def list_cmd(
    state: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    channel: Annotated[str | None, typer.Option(help="hl7, hl7-escalation, fhir-push, ...")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List outbox messages, newest first."""
    rows = list_messages(_queue().engine, state=state, channel=channel, limit=limit)
    _print([_row(m) for m in rows], as_json)


@outbox_app.command("dead-letters")
def dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Dead messages (refused or out of attempts) and dead delivery jobs, with the reasons."""
    queue = _queue()
    rows = [_row(m) for m in list_messages(queue.engine, state="dead", limit=1000)]
    jobs: list[Job] = []
    for kind in DELIVERY_KINDS:
        jobs.extend(queue.jobs(state="dead", kind=kind, limit=1000))
    if as_json:
        job_rows = [
            {"job": j.id, "kind": j.kind, "attempts": j.attempts, "error": j.last_error or ""}
            for j in jobs
        ]
        typer.echo(json.dumps({"messages": rows, "jobs": job_rows}, indent=2))
        return
    typer.echo(f"dead messages: {len(rows)}")
    _print(rows, False)
    typer.echo(f"dead delivery jobs: {len(jobs)}")
    for j in jobs:
        typer.echo(f"{j.id:>6} {j.kind:<18} tries {j.attempts:<3} {j.last_error or ''}")


@outbox_app.command("retry")
def retry(
    outbox_id: Annotated[int, typer.Argument(help="Outbox message id (see `outbox list`).")],
) -> None:
    """Send a dead message again: same bytes, same control ID, a fresh attempt budget."""
    try:
        retry_message(_queue(), outbox_id)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"message {outbox_id} queued again")
