"""The networks of the hierarchical VQ-VAE and the static prior tables stored beside them.

Nothing here reads files or images: ``hvq.codec.runtime`` does.
"""
