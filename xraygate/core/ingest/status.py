"""DICOM statuses an ingest answers (PS3.4 B.2.3, PS3.7 C); STOW-RS maps them to HTTP.

0xA7xx asks the sender to retry later; 0xA9xx and 0xCxxx mean the object itself is at fault and
a retry without a fix will fail again.
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    SUCCESS = 0x0000
    #: Refused, out of resources: the sender should retry later.
    OUT_OF_RESOURCES = 0xA700
    #: Out of resources because the store (or the local spool) has too little free space.
    OUT_OF_RESOURCES_STORAGE_FULL = 0xA701
    #: Out of resources because the index database failed (transient).
    OUT_OF_RESOURCES_DATABASE = 0xA702
    #: The data set does not match the SOP class (or lacks required UIDs): do not retry.
    DATASET_MISMATCH = 0xA900
    #: Cannot understand: unparseable, empty or truncated data set.
    CANNOT_UNDERSTAND = 0xC000
    #: Generic failure: an unexpected error while storing (a bug; see the log).
    PROCESSING_FAILURE = 0x0110
    #: Refused: SOP class not supported (normally settled when the association is negotiated).
    SOP_CLASS_NOT_SUPPORTED = 0x0122

    @property
    def is_failure(self) -> bool:
        return self != Status.SUCCESS

    @property
    def retryable(self) -> bool:
        """The sender may succeed later without changing the object."""
        return (self >> 8) == 0xA7 or self == Status.PROCESSING_FAILURE
