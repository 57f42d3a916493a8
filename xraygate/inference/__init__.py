"""Inference: pneumonia-risk scoring of chest radiographs, with a versioned model registry.

Read top to bottom: :mod:`.applicability` (may the model read this image?) ->
:mod:`.preprocess` (DICOM pixels -> the model's input) -> :mod:`.runtime` (the Keras model) ->
:mod:`.scoring` (image scores -> study category) -> :mod:`.registry` (model versions in the
object store) -> :mod:`.worker` (the ``infer`` job). :mod:`.training` builds models, including
the bundled demonstration model. Only this subpackage imports TensorFlow.
"""
