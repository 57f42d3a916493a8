"""`xraygate outbox list|dead-letters|retry` on a real database with a real MLLP listener."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.hl7.conftest import make_env
from tests.mllp_listener import MllpListener
from tests.results_factory import enqueue_emit, make_result, run_until
from xraygate.cli import app
from xraygate.core.config import Settings


def test_outbox_commands(sqlite_settings: Settings) -> None:
    runner = CliRunner()
    with MllpListener(script=lambda n, cid: "AR" if n == 0 else "AA") as listener:
        env = make_env(sqlite_settings, listener)
        made = make_result(env.queue.engine, name="SECRET^NAME")
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
        listed = runner.invoke(app, ["outbox", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        [row] = json.loads(listed.output)
        assert row["state"] == "dead" and row["channel"] == "hl7"
        assert "SECRET" not in listed.output and made.study_uid not in listed.output
        dead = runner.invoke(app, ["outbox", "dead-letters"])
        assert dead.exit_code == 0 and "dead messages: 1" in dead.output and "AR" in dead.output
        again = runner.invoke(app, ["outbox", "retry", str(row["id"])])
        assert again.exit_code == 0, again.output
        run_until(env.queue, env.handlers, env.all_final)
        assert [m.state for m in env.outbox()] == ["delivered"]
        assert listener.received[0].control_id == listener.received[1].control_id
        missing = runner.invoke(app, ["outbox", "retry", "9999"])
        assert missing.exit_code == 2
