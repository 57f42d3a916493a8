"""The one exception tree of xraygate.

Adapters translate library errors with ``raise ... from exc``.

::

    XraygateError
    ├── ConfigurationError        a setting is missing or inconsistent
    ├── StorageError              the object store failed
    │   ├── ObjectNotFound        no object under that key
    │   └── StorageFull           not enough free space to accept data
    ├── DatabaseError             the index or queue database failed
    ├── QueueError                the work queue refused an operation
    │   ├── LeaseLost             the job's lease expired and another worker may own it
    │   ├── JobPayloadError       a job's payload does not fit its kind (core/jobs.py)
    │   └── NotYet                the job must wait (a study still receiving images): deferred
    ├── IngestError               an incoming DICOM object was refused (carries a Status)
    ├── DicomLimitError           a DICOM header breaks a safety limit (core/dicom_limits.py)
    │   ├── ImageTooLarge         it declares more pixel samples than XRAYGATE_MAX_IMAGE_PIXELS
    │   └── InvalidUID            a UID is not the PS3.5 9.1 syntax (never becomes a key/path)
    ├── AssociationRefused        a DICOM peer rejected, aborted or did not answer an association
    ├── DimseCodecError           a command set or P-DATA PDU that does not decode (SCP fast path)
    ├── InferenceError            preprocessing or the model failed
    │   ├── NotApplicable         the image is not one the model may read
    │   └── ModelRegistryError    a model version is missing, invalid or does not match its sha256
    │       └── ReleaseRefused    a published model release failed its signature or digest check
    ├── DeliveryError             sending a result failed
    │   ├── RetryableDelivery     the peer may accept later (timeout, 5xx, HL7 AE)
    │   └── PermanentDelivery     the peer refused for good (4xx, HL7 AR)
    ├── DeidentificationError     a file could not be de-identified safely
    │   ├── UnparseableInput      the file is not readable DICOM: quarantined, never exported
    │   └── BurnedInText          pixels may carry burned-in text and no cleaning rule exists
    ├── QidoError                 a DICOMweb search the server cannot run as asked (answered 400)
    └── GatewayError              an HTTP request refused, with its status (gateway/errors.py)
"""

from __future__ import annotations


class XraygateError(Exception):
    """Base of every error raised by xraygate. ``permanent`` errors are not retried."""

    permanent: bool = False


class ConfigurationError(XraygateError):
    """A setting is missing or inconsistent."""


class StorageError(XraygateError):
    """The object store failed."""


class ObjectNotFound(StorageError):
    """No object exists under the key."""


class StorageFull(StorageError):
    """Not enough free space to accept data."""


class DatabaseError(XraygateError):
    """The index or queue database failed."""


class QueueError(XraygateError):
    """The work queue refused an operation."""


class LeaseLost(QueueError):
    """The job's lease expired; another worker may own it now."""


class JobPayloadError(QueueError):
    """A job's kind or payload does not fit the contract in :mod:`xraygate.core.jobs`."""

    permanent = True


class NotYet(QueueError):
    """Not a failure: the job is put back to run after ``seconds``, its attempt not counted."""

    def __init__(self, seconds: float, why: str = "") -> None:
        super().__init__(why or f"not yet: again in {seconds:.1f}s")
        self.seconds = max(0.0, seconds)


class IngestError(XraygateError):
    """An incoming DICOM object was refused. ``status`` is the DICOM status to answer."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


class DicomLimitError(XraygateError):
    """A DICOM header breaks a safety limit; the message is the reason (no data values)."""

    permanent = True


class ImageTooLarge(DicomLimitError):
    """The image declares more pixel samples than ``XRAYGATE_MAX_IMAGE_PIXELS`` allows."""


class InvalidUID(DicomLimitError):
    """A UID does not follow PS3.5 9.1 (digits and dots, at most 64 characters)."""


class AssociationRefused(XraygateError):
    """A DICOM peer rejected, aborted or did not answer our association request."""


class DimseCodecError(XraygateError):
    """A DIMSE command set or P-DATA-TF PDU that does not decode (dicom_scp/dimse_codec.py)."""


class InferenceError(XraygateError):
    """Preprocessing or the model failed."""


class NotApplicable(InferenceError):
    """The image is not one the model may read (the reason is the message)."""

    permanent = True


class ModelRegistryError(InferenceError):
    """A model version is missing, invalid, or does not match its recorded sha256."""


class ReleaseRefused(ModelRegistryError):
    """A published model release is not signed by a trusted key, or its files do not match the
    digests it was signed with. It is not imported."""

    permanent = True


class DeliveryError(XraygateError):
    """Sending a result to an EHR, HL7 engine or other target failed."""


class RetryableDelivery(DeliveryError):
    """The peer may accept later: timeout, connection drop, HTTP 5xx, HL7 AE."""


class PermanentDelivery(DeliveryError):
    """The peer refused for good: HTTP 4xx, HL7 AR. Retrying will not help."""

    permanent = True


class DeidentificationError(XraygateError):
    """A file could not be de-identified safely; it must not be exported."""


class UnparseableInput(DeidentificationError):
    """The file is not readable DICOM; it is quarantined with the reason and never exported."""

    permanent = True


class BurnedInText(DeidentificationError):
    """The pixels may carry burned-in text and no pixel-cleaning rule exists for the device."""

    permanent = True
