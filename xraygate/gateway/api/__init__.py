"""The JSON APIs under ``/api``: clinician (worklist, studies, images, feedback) and admin."""
