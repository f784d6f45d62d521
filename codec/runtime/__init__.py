"""What compress and decompress run: images in and out, tiled transforms, model files, the pipeline.

The data path, one call per arrow, is in ``pipeline``; ``pillow_plugin``
lets Pillow open ``.hvq`` files through it.
"""
