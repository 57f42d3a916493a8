"""Import Keras/TensorFlow without their C++ start-up lines on the console.

TensorFlow's native code prints (oneDNN, CPU features, "All log messages before
absl::InitializeLog()") straight to file descriptor 2 while it loads, before any environment
variable can hold it back. :func:`import_keras` captures fd 2 for the import, logs those lines
once at DEBUG through our logging, and writes anything else captured meanwhile (another thread's
log line) back to stderr, so nothing of ours is lost.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from types import ModuleType

log = logging.getLogger("xraygate.inference.tensorflow")
_NATIVE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|To enable the following"
    r" instructions|I0000 )"
)
_lock = threading.Lock()


def is_native_noise(line: str) -> bool:
    return bool(_NATIVE.match(line))


def import_keras() -> ModuleType:
    """``import keras`` (first time: with TensorFlow's native start-up output captured)."""
    with _lock:
        if "keras" in sys.modules:
            return sys.modules["keras"]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile(mode="w+b") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                import keras
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                captured = sink.read().decode("utf-8", "replace")
        _replay(captured)
        module: ModuleType = keras
        return module


def _replay(captured: str) -> None:
    others = []
    for line in captured.splitlines():
        if is_native_noise(line):
            log.debug("%s", line)
        elif line.strip():
            others.append(line)
    if others:
        sys.stderr.write("\n".join(others) + "\n")
