"""xraygate: AI triage of chest X-rays plugged into a hospital's DICOM, FHIR and HL7 plumbing."""

__version__ = "0.1.0"
