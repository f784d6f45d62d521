"""The ``hvq`` command line (click); the library never imports it."""
