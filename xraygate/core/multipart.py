"""multipart/related bodies (RFC 2387) as DICOMweb uses them (PS3.18 8.6.1.2): built by the
STOW-RS sender of ``pacs/`` and the WADO-RS routes, parsed by the STOW-RS route of the gateway."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from xraygate.core.errors import XraygateError

DICOM = "application/dicom"


class MultipartError(XraygateError):
    """A body that is not the multipart/related it claims to be."""


@dataclass(frozen=True)
class Part:
    content_type: str
    data: bytes
    headers: dict[str, str]


def new_boundary() -> str:
    return f"xraygate-{secrets.token_hex(16)}"


def content_type(boundary: str, part_type: str = DICOM) -> str:
    """The Content-Type header of a multipart/related body of ``part_type`` parts."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def build(parts: list[tuple[str, bytes]], boundary: str) -> bytes:
    """``parts`` as (content type, bytes) in one multipart/related body."""
    out = bytearray()
    for ctype, data in parts:
        out += f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode("ascii")
        out += data
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode("ascii")
    return bytes(out)


_PARAM = re.compile(r';\s*([A-Za-z0-9_.-]+)\s*=\s*("([^"]*)"|[^;\s]+)')


def media_params(header: str) -> tuple[str, dict[str, str]]:
    """``'multipart/related; type="application/dicom"; boundary=x'`` ->
    ``("multipart/related", {"type": "application/dicom", "boundary": "x"})``."""
    media, _, rest = header.partition(";")
    params = {
        m.group(1).lower(): m.group(3) if m.group(3) is not None else m.group(2)
        for m in _PARAM.finditer(";" + rest)
    }
    return media.strip().lower(), params


def parse(body: bytes, header: str) -> list[Part]:
    """The parts of a multipart/related ``body`` whose Content-Type header is ``header``."""
    media, params = media_params(header)
    boundary = params.get("boundary")
    if media != "multipart/related" or not boundary:
        raise MultipartError("expected multipart/related with a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise MultipartError("the body does not close its multipart boundary")
    parts: list[Part] = []
    for chunk in chunks[1:-1]:
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a part has no header block")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append(
            Part(
                headers.get("content-type", params.get("type", "")),
                data.removesuffix(b"\r\n"),
                headers,
            )
        )
    return parts
