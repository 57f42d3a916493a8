"""Read models shared by the APIs, the pages and the FHIR API: worklist, study, images."""
