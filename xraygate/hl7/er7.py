"""Writing HL7 v2 ER7 text by hand: escaping, length limits, segments, character sets.

We write the message text ourselves (and let hl7apy parse it back at STRICT level) because the
library re-escapes backslashes it does not recognise (``\\X0B\\`` became ``\\E\\X0B\\E\\``) and
cannot hex-escape control characters.

Escaping: ``\\`` ``|`` ``^`` ``&`` ``~`` become ``\\E\\ \\F\\ \\S\\ \\T\\ \\R\\``; every C0 control
character (0x00-0x1F: CR, LF, 0x0B, 0x1C ...) and DEL become the hexadecimal escape ``\\Xhh\\``,
so no value can end a segment or an MLLP frame.

Length limits (**truncation, never a dead letter**): a component is cut to the maximum of its
HL7 data type as our strict validator (hl7apy 2.5.1) enforces it: IS 20 (HD-1 namespaces: the
assigning authority, MSH-3..6; EI-2; PV1-2), NM 16, ST 199 (identifiers, names, codes, texts),
FT 65536 (NTE-3). The limit counts the escaped text, and a cut never splits an escape sequence.
Every DICOM value we send is shorter than its limit except an IssuerOfPatientID (LO, 64) longer
than 20 characters, which is sent as its first 20.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import Final

from xraygate.core.config import Hl7Charset

ENCODING_CHARACTERS: Final = "^~\\&"
IS: Final = 20
NM: Final = 16
ST: Final = 199
FT: Final = 65536

_ESCAPES: Final = {
    "\\": "\\E\\",
    "|": "\\F\\",
    "^": "\\S\\",
    "&": "\\T\\",
    "~": "\\R\\",
}

#: HL7 table 0211 value -> Python codec.
CODECS: Final[dict[str, str]] = {
    "UNICODE UTF-8": "utf-8",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/5": "iso8859-5",
    "8859/7": "iso8859-7",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ASCII": "ascii",
}


def codec_of(charset: Hl7Charset | str) -> str:
    """The Python codec of an MSH-18 value (UTF-8 for an empty or unknown one)."""
    return codecs.lookup(CODECS.get(charset, "utf-8")).name


def _escape_char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\X{ord(ch):02X}\\"
    return ch


def text(value: str, limit: int = ST) -> str:
    """One component (or subcomponent) value: escaped, then cut to ``limit`` characters of
    escaped text without splitting an escape sequence."""
    out: list[str] = []
    used = 0
    for ch in value:
        piece = _escape_char(ch)
        if used + len(piece) > limit:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)


def joined(parts: Iterable[str], separator: str) -> str:
    """Already-escaped parts joined by a separator, empty trailing parts dropped."""
    return separator.join(parts).rstrip(separator)


def components(*parts: str) -> str:
    return joined(parts, "^")


def subcomponents(*parts: str) -> str:
    return joined(parts, "&")


def repetitions(parts: Iterable[str]) -> str:
    return "~".join(p for p in parts if p)


def segment(name: str, fields: dict[int, str]) -> str:
    """``NAME|f1|f2...`` from {field number: already-escaped field text}; the empty tail dropped.

    For MSH, field 1 is the field separator itself and field 2 the encoding characters: pass
    fields from 3 on.
    """
    if name == "MSH":
        first, values = 3, ["MSH", ENCODING_CHARACTERS]
    else:
        first, values = 1, [name]
    last = max((n for n, v in fields.items() if v), default=first - 1)
    values.extend(fields.get(n, "") for n in range(first, last + 1))
    return "|".join(values)


def message(segments: Iterable[str]) -> str:
    """The ER7 text: every segment, the last one included, terminated by a carriage return."""
    return "".join(f"{s}\r" for s in segments)


def representable(er7: str, charset: Hl7Charset | str) -> str:
    """The text as the receiver will decode it: characters the charset cannot encode become
    ``?`` (so what we store is what we send)."""
    codec = codec_of(charset)
    return er7.encode(codec, errors="replace").decode(codec)
