"""HL7 v2.5.1 ORU^R01 results over MLLP, ordered per patient, with escalation of high risk."""
