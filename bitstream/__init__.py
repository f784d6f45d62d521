"""The .hvq format: container, entropy coding and errors, with numpy, zlib and constriction only.

Nothing here imports torch or ``hvq.codec``, so files can be read, checked,
stripped and fuzzed without model weights.
"""
