"""The transforms and what is built around them (torch lives here), one subpackage per job.

::

    model/    the networks: config, layers, encoder, codebook, decoder, the VQ-VAE, static prior tables
    runtime/  what compress and decompress run: image IO, tiling, model files, the pipeline, the Pillow plugin
    train/    training a model: config, data, objective, the loop, distributed runs, validation, plots
    fit/      turning a checkpoint into a deployable model: export, static and context prior fitting

Layering (``tests/test_layering.py``): model <- runtime <- train, fit; nothing
here imports ``hvq.cli`` or ``hvq.benchmarks``.
"""
