"""Model building: a synthetic chest-radiograph generator, the training pipeline, evaluation."""
