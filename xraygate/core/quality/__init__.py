"""How good is each model version, from clinicians' labels? Shared by the CLI and the gateway.

:mod:`.stats` (AUROC, calibration, Wilson / bootstrap intervals, PSI / KS drift) ->
:mod:`.measures` (one version's figures over a set of studies; paired comparisons) ->
:mod:`.report` (from the database: per version, per period, paired with the emitting version)
-> :mod:`.promotion` (the rule that activates a better shadow version) and
:mod:`.measure_report` (the report as a FHIR R4 MeasureReport). No TensorFlow here.
"""
