"""Training: importers for the label formats labs have, sampling, augmentation, the loop, evaluation."""
