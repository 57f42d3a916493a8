"""Secret files: 0600 from the first byte, generated once, the same for racing processes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from xraygate.core.errors import ConfigurationError
from xraygate.core.secret_files import secret_file


def test_generated_once_mode_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "some-secret"
    first = secret_file(path, lambda: "s3cr3t")
    assert first == b"s3cr3t"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_file(path, lambda: "other") == b"s3cr3t"
    assert os.listdir(path.parent) == ["some-secret"]  # no temporary file left behind


def test_racing_creators_all_read_the_one_that_won(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    seen: list[bytes] = []
    start = threading.Barrier(8)

    def create(n: int) -> None:
        start.wait()
        seen.append(secret_file(path, lambda: f"value-{n}"))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert path.read_bytes() == seen[0]


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("\n")
    with pytest.raises(ConfigurationError):
        secret_file(tmp_path / "secret", lambda: "unused")
