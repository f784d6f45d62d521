"""Training a model on a user's images: config, crops, objective, the loop, validation and its plots."""
