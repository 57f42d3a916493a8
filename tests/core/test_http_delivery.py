"""The one HTTP delivery policy (FHIR push, escalation webhook): what is retried, what is not."""

from __future__ import annotations

import httpx
import pytest

from xraygate.core.http_delivery import post


def _client(handler: object) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "result"),
    [(200, "delivered"), (201, "delivered"), (408, "retry"), (425, "retry"), (429, "retry"),
     (500, "retry"), (503, "retry"), (400, "reject"), (404, "reject"), (422, "reject")],
)  # fmt: skip
def test_status_classification(status: int, result: str) -> None:
    client = _client(lambda request: httpx.Response(status, text="answer"))
    outcome = post(client, "http://peer/x", b"{}", {"Content-Type": "application/json"})
    assert (outcome.result, outcome.detail, outcome.response) == (
        result,
        f"HTTP {status}",
        "answer",
    )


def test_a_refusal_carries_the_gist_and_failed_connections_are_retried() -> None:
    refused = post(
        _client(lambda r: httpx.Response(404, text="nope")),
        "http://p",
        b"",
        {},
        summarize=str.upper,
    )
    assert refused.detail == "HTTP 404: NOPE"

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    assert post(_client(down), "http://p", b"", {}).detail == "connection failed: ConnectError"
    assert post(_client(slow), "http://p", b"", {}).detail == "timeout: ReadTimeout"
