"""The JSON APIs under ``/api``, each router included by the app behind its role:

==============  ==============  ===========================================================
module          who             what
==============  ==============  ===========================================================
``clinical``    clinician       worklist, a study's triage, images rendered as PNG
``feedback``    clinician       a clinician's finding on a study
``admin``       admin           models, dead letters, effective settings, the audit trail
``session``     authenticated   who am I, the OpenAPI description
==============  ==============  ===========================================================
"""
