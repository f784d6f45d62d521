"""The analysis/synthesis transforms, the learned prior, and training (torch lives here).

Read in data-path order: ``imageio`` -> ``encoder`` -> ``codebook`` ->
``prior`` -> (``hvq.bitstream``) -> ``decoder``; ``pipeline.Codec`` ties them
together, ``weights`` loads and saves deployable models.
"""
