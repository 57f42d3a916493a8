"""De-identification (DICOM PS3.15 Annex E) and the retraining export.

Read top to bottom: :mod:`.profile` (Table E.1-1 shipped as data -> resolved actions per option
set) -> :mod:`.values` (keyed pseudonyms, date shifts, dummies, text scrubbing) -> :mod:`.pixels`
(burned-in text rules) -> :mod:`.engine` (one object) -> :mod:`.policy` (which studies leave) ->
:mod:`.export` (export store + manifest) -> :mod:`.worker` (the ``deidentify`` job).
"""
