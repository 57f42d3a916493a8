"""Issue 11, HTTP limits over real sockets against a real ``xraygate gateway`` process: an
oversized unauthenticated body (Content-Length and chunked) gets 413 before authentication and
without the process growing (RSS measured and printed); a client that never finishes its headers
is disconnected; forwarded headers are believed only from configured proxies; Host is checked."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.gateway.conftest import SECRET, free_port, gateway_settings
from xraygate.core.errors import ConfigurationError
from xraygate.gateway.app import create_app
from xraygate.gateway.auth import mint_token

pytestmark = pytest.mark.integration

MB = 1024 * 1024
BIG = 150 * MB


@dataclass
class Proc:
    port: int
    process: subprocess.Popen[bytes]
    db: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)


def _start(tmp: Path, **env: str) -> Iterator[Proc]:
    gateway_settings(tmp)  # migrated database, as the fixtures make it
    port = free_port()
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")},
        "XRAYGATE_DATA_DIR": str(tmp),
        "XRAYGATE_DATABASE_URL": f"sqlite:///{tmp / 'x.db'}",
        "XRAYGATE_AUTH_SHARED_SECRET": SECRET,
        "XRAYGATE_HTTP_HOST": "127.0.0.1",
        "XRAYGATE_HTTP_PORT": str(port),
        "XRAYGATE_BUNDLED_DEMO_MODEL": "false",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "xraygate", "gateway"],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.2)
    try:
        yield Proc(port, process, tmp / "x.db")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    yield from _start(
        tmp_path_factory.mktemp("http"),
        XRAYGATE_HTTP_HEADER_TIMEOUT_SECONDS="1",
        XRAYGATE_HTTP_ALLOWED_HOSTS="127.0.0.1,localhost",
    )


class PeakRss:
    """Samples a process's RSS in a thread until stopped; ``peak`` is the largest seen."""

    def __init__(self, proc: Proc) -> None:
        self.proc, self.peak, self._stop = proc, proc.rss(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.rss())


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    sock.settimeout(60)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def _send_big(port: int, path: str, chunked: bool) -> tuple[int, dict[str, str], bytes, int]:
    """POST 150 MB of JSON to ``path`` without credentials; the status, headers, body of the
    answer and how many body bytes the server let us send before it answered or closed."""
    sock = socket.create_connection(("127.0.0.1", port))
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}"
    form = path == "/login"
    media = "application/x-www-form-urlencoded" if form else "application/json"
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\n"
        f"{framing}\r\n\r\n".encode()
    )
    field = b"f=" + b"A" * (64 * 1024 - 3) + b"&"  # fields under Starlette's 1 MB part limit
    piece = field * 16 if form else b'{"x":"' + b"A" * (MB - 8) + b'"}'
    sent = 0
    sock.settimeout(10)
    try:
        while sent < BIG:
            data = piece if not chunked else b"%x\r\n%s\r\n" % (len(piece), piece)
            sock.sendall(data)
            sent += len(piece)
    except OSError:
        pass  # the server answered 413 and closed: the rest is never read
    try:
        status, headers, body = _read_response(sock)
    finally:
        sock.close()
    return status, headers, body, sent


@pytest.mark.parametrize(
    ("path", "chunked"),
    [
        ("/api/studies/1.2.3/feedback", False),
        ("/api/studies/1.2.3/feedback", True),  # FastAPI reads a JSON body before auth
        ("/login", False),
        ("/login", True),  # a form, read before the credential in it is checked
        ("/fhir/Patient", False),  # no route reads it: refused on the declared length alone
    ],
)
def test_150mb_unauthenticated_body_gets_413_without_growing(
    gateway: Proc, path: str, chunked: bool
) -> None:
    for _ in range(3):  # warm the process: imports and first-request allocations
        httpx.get(f"{gateway.base}/fhir/metadata", timeout=10)
    before = gateway.rss()
    with PeakRss(gateway) as rss:
        status, headers, body, sent = _send_big(gateway.port, path, chunked)
    growth = (rss.peak - before) / MB
    print(
        f"{path} {'chunked' if chunked else 'content-length'}: {status}, sent "
        f"{sent / MB:.0f} MB of {BIG / MB:.0f}, RSS {before / MB:.0f} MB -> peak "
        f"{rss.peak / MB:.0f} MB (+{growth:.1f} MB)"
    )
    assert status == 413, body
    assert growth < 50
    parsed = json.loads(body)
    if path.startswith("/fhir"):
        assert headers["content-type"].startswith("application/fhir+json")
        assert parsed["resourceType"] == "OperationOutcome"
        assert parsed["issue"][0]["code"] == "too-long"
    else:
        assert "larger than" in parsed["detail"]
    # the service is fine afterwards
    assert httpx.get(f"{gateway.base}/healthz", timeout=10).status_code == 200


def test_bodies_within_the_limit_are_served(gateway: Proc) -> None:
    answer = httpx.post(
        f"{gateway.base}/api/studies/1.2.3/feedback", json={"x": "A" * 100_000}, timeout=10
    )
    assert answer.status_code == 401  # read, then refused by authentication as before


def test_a_client_that_never_finishes_its_headers_is_disconnected(gateway: Proc) -> None:
    slow = socket.create_connection(("127.0.0.1", gateway.port))
    idle = socket.create_connection(("127.0.0.1", gateway.port))  # sends nothing at all
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        for sock in (slow, idle):
            sock.settimeout(30)  # generous: the server's deadline is 1 s
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server
            print(f"closed after {time.monotonic() - started:.1f} s")
    finally:
        slow.close()
        idle.close()
    assert httpx.get(f"{gateway.base}/healthz", timeout=10).status_code == 200


def test_host_header_outside_the_allowed_list_is_refused(gateway: Proc) -> None:
    answer = httpx.get(f"{gateway.base}/healthz", headers={"Host": "evil.example"}, timeout=10)
    assert answer.status_code == 400


def _audited_source(proc: Proc, tmp: Path) -> str:
    settings = gateway_settings(tmp)
    admin = mint_token(settings, ["admin"], "root", 60)
    answer = httpx.get(
        f"{proc.base}/fhir/Patient",
        headers={"Authorization": f"Bearer {admin}", "X-Forwarded-For": "203.0.113.7"},
        timeout=10,
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 30  # the audit row is written once the answer has left
    while True:
        with sqlite3.connect(proc.db) as conn:
            query = "SELECT source FROM audit_events WHERE route LIKE '/fhir/%' ORDER BY id DESC"
            row = conn.execute(query).fetchone()
        if row is not None:
            return str(row[0])
        assert time.monotonic() < deadline, "no audit record"
        time.sleep(0.1)


def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    direct, proxied = tmp_path / "direct", tmp_path / "proxied"
    for proc in _start(direct):
        assert _audited_source(proc, direct) == "127.0.0.1"
    env = {
        "XRAYGATE_HTTP_TRUSTED_PROXIES": "127.0.0.1",
        "XRAYGATE_FHIR_BASE_URL": "https://xraygate.hospital.example/fhir",
    }
    for proc in _start(proxied, **env):
        assert _audited_source(proc, proxied) == "203.0.113.7"


def test_behind_a_proxy_the_fhir_base_url_is_required(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, http_trusted_proxies=["10.0.0.1"])
    with pytest.raises(ConfigurationError, match="XRAYGATE_FHIR_BASE_URL"):
        create_app(settings)
