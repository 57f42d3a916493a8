"""Tesseract in-process: its C API (``libtesseract.so.5`` of Debian's ``tesseract-ocr``) through
ctypes, one engine per thread, loaded once.

Starting the ``tesseract`` command costs ~0.07 s of CPU each time (the process, the English
model) while reading a page of candidate text lines costs ~0.02-0.06 s: the pixel step reads
each image two or three times, so the command line spent most of its time starting. The engine
here is made once per thread (TessBaseAPI objects are not thread-safe) and kept; pages are passed
as 8-bit greyscale buffers (nothing is written to disk) and read back as TSV, as the command
line writes it. ``OMP_THREAD_LIMIT=1`` is set before the library is loaded (its OpenMP threads
only spin on a small shared machine). Unlike the command, a read here has no timeout and a crash
of the library would take the worker with it; the pages it is given are small crops.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading
from functools import cache
from typing import Any

import numpy as np

from xraygate.core.errors import DeidentificationError

LIBRARY = "libtesseract.so.5"
_DPI = 300


class EngineUnavailable(DeidentificationError):
    """The Tesseract library cannot be loaded or initialised."""


@cache
def _lib() -> ctypes.CDLL:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        raise EngineUnavailable(f"{LIBRARY} cannot be loaded: install tesseract-ocr") from exc
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    signatures: dict[str, tuple[list[Any], Any]] = {
        "TessBaseAPICreate": ([], vp),
        "TessBaseAPIDelete": ([vp], None),
        "TessBaseAPIEnd": ([vp], None),
        "TessBaseAPIInit3": ([vp, cp, cp], i),
        "TessBaseAPISetPageSegMode": ([vp, i], None),
        "TessBaseAPISetVariable": ([vp, cp, cp], i),
        "TessBaseAPISetImage": ([vp, cp, i, i, i, i], None),
        "TessBaseAPISetSourceResolution": ([vp, i], None),
        "TessBaseAPIRecognize": ([vp, vp], i),
        "TessBaseAPIGetTsvText": ([vp, i], vp),
        "TessBaseAPIClear": ([vp], None),
        "TessDeleteText": ([vp], None),
    }
    for name, (args, result) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    return lib


def load() -> None:
    """Load the library (EngineUnavailable when it cannot be): a start-up check."""
    _lib()


class _Engine:
    """One TessBaseAPI, English, its debug output discarded."""

    def __init__(self) -> None:
        lib = _lib()
        self.handle = lib.TessBaseAPICreate()
        if not self.handle or lib.TessBaseAPIInit3(self.handle, None, b"eng") != 0:
            raise EngineUnavailable(
                "Tesseract could not load its English model (tesseract-ocr-eng)"
            )
        lib.TessBaseAPISetVariable(self.handle, b"debug_file", os.devnull.encode())
        _ENGINES.append(self)

    def read(self, pages: list[np.ndarray[Any, Any]], psm: int, variables: dict[str, str]) -> str:
        """TSV of every page, pages numbered from 1 as the command numbers a TIFF's."""
        lib = _lib()
        lib.TessBaseAPISetPageSegMode(self.handle, psm)
        for name, value in {"tessedit_do_invert": "1", **variables}.items():
            lib.TessBaseAPISetVariable(self.handle, name.encode(), value.encode())
        out = []
        for number, page in enumerate(pages, 1):
            data = np.ascontiguousarray(page, dtype=np.uint8)
            height, width = data.shape
            lib.TessBaseAPISetImage(self.handle, data.tobytes(), width, height, 1, width)
            lib.TessBaseAPISetSourceResolution(self.handle, _DPI)
            if lib.TessBaseAPIRecognize(self.handle, None) != 0:
                lib.TessBaseAPIClear(self.handle)
                raise DeidentificationError(f"Tesseract could not read page {number}")
            text = lib.TessBaseAPIGetTsvText(self.handle, number - 1)  # it writes number
            try:
                out.append(ctypes.string_at(text).decode("utf-8", errors="replace"))
            finally:
                lib.TessDeleteText(text)
            lib.TessBaseAPIClear(self.handle)
        return "".join(out)

    def close(self) -> None:
        lib = _lib()
        lib.TessBaseAPIEnd(self.handle)
        lib.TessBaseAPIDelete(self.handle)


_LOCAL = threading.local()
_ENGINES: list[_Engine] = []


def read_tsv(pages: list[np.ndarray[Any, Any]], psm: int, variables: dict[str, str]) -> str:
    """Tesseract's TSV (word rows, no header) for 8-bit greyscale pages, in this thread's
    engine; ``variables`` are Tesseract settings for this read (``tessedit_do_invert``...)."""
    engine = getattr(_LOCAL, "engine", None)
    if engine is None:
        engine = _LOCAL.engine = _Engine()
    text: str = engine.read(pages, psm, variables)
    return text


@atexit.register
def _close_all() -> None:
    for engine in _ENGINES:
        engine.close()
    _ENGINES.clear()
