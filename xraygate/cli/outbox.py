"""Delivery commands: ``xraygate outbox list|retry|dead-letters``.

Output carries no PHI: messages are shown by id, channel, sequence, state and control ID, with
the study as a correlation id.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from xraygate.cli.core import fail

if TYPE_CHECKING:
    from xraygate.core.models import OutboxMessage
    from xraygate.core.queue import JobQueue
from xraygate.core.errors import XraygateError

outbox_app = typer.Typer(
    help="Result deliveries (HL7, FHIR push, escalation).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(outbox_app, name="outbox")


def _queue() -> JobQueue:
    from xraygate.core.config import get_settings
    from xraygate.core.queue import JobQueue

    return JobQueue.from_settings(get_settings(), migrate=True)


def _row(m: OutboxMessage) -> dict[str, object]:
    from xraygate.core.logging import correlation_id

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


def _print(rows: list[dict[str, object]], as_json: bool, empty: str) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(empty)
        return
    from xraygate.cli.tables import print_table

    headers = ["id", "channel", "seq", "state", "tries", "control id", "study", "last error"]
    keys = ["id", "channel", "seq", "state", "attempts", "control_id", "study", "last_error"]
    print_table(headers, ([r.get(k, "") for k in keys] for r in rows), right={0, 2, 4})


@outbox_app.command("list")
def list_cmd(
    state: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    channel: Annotated[str | None, typer.Option(help="hl7, hl7-escalation, fhir-push, ...")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List outbox messages, newest first."""
    from xraygate.core.outbox import list_messages

    rows = list_messages(_queue().engine, state=state, channel=channel, limit=limit)
    which = " ".join(x for x in (state, channel) if x)
    _print([_row(m) for m in rows], as_json, f"No {which + ' ' if which else ''}outbox messages.")


@outbox_app.command("dead-letters")
def dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Dead messages (refused or out of attempts) and dead delivery jobs, with the reasons."""
    from xraygate.core.jobs import DELIVERY_KINDS
    from xraygate.core.models import Job
    from xraygate.core.outbox import list_messages

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
    _print(rows, False, "No dead messages.")
    typer.echo(f"dead delivery jobs: {len(jobs)}")
    for j in jobs:
        typer.echo(f"{j.id:>6} {j.kind:<18} tries {j.attempts:<3} {j.last_error or ''}")


@outbox_app.command("retry")
def retry(
    outbox_id: Annotated[int, typer.Argument(help="Outbox message id (see `outbox list`).")],
) -> None:
    """Send a dead message again: same bytes, same control ID, a fresh attempt budget."""
    from xraygate.core.outbox import retry_message

    try:
        retry_message(_queue(), outbox_id)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"message {outbox_id} queued again")
