"""From a trained checkpoint to a deployable model file: the static and context priors, fitted on images."""
