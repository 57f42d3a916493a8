"""DICOM statuses the SCP answers (PS3.4 B.2.3, PS3.7 C)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    SUCCESS = 0x0000
    #: Refused, out of resources: the sender should retry later.
    OUT_OF_RESOURCES = 0xA700
    #: Out of resources because the store has too little free space.
    OUT_OF_RESOURCES_STORAGE_FULL = 0xA701
    #: Out of resources because the index database failed (transient).
    OUT_OF_RESOURCES_DATABASE = 0xA702
    #: The data set does not match the SOP class (or lacks required UIDs): do not retry.
    DATASET_MISMATCH = 0xA900
    #: Cannot understand: unparseable or truncated data set.
    CANNOT_UNDERSTAND = 0xC000
    PROCESSING_FAILURE = 0x0110

    @property
    def is_failure(self) -> bool:
        return self != Status.SUCCESS
