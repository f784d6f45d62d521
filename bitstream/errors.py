"""The exceptions hvq raises on bad input.

Every fault a user can cause (a damaged file, a wrong model, an unreadable
image, a refused setting, a data folder with nothing to use) raises a
subclass of ``HvqError`` with a one-line message; anything else escaping
the library is a bug, and the command line lets it through as a traceback
rather than dress it as a user error.  The family stays small, one class
per kind of input, so a caller tells them apart without parsing text.
They live here, in the torch-free layer, so the format tools can raise
them without importing the model.
"""

from __future__ import annotations


class HvqError(Exception):
    """Base class of every error hvq reports to a user."""


class HvqFormatError(HvqError):
    """The bytes are not a valid .hvq file (bad signature, CRC, structure, version, limits)."""


class HvqTruncatedError(HvqFormatError):
    """The file ends before what it declares: names what is missing."""


class HvqModelError(HvqError):
    """A model cannot be loaded, or does not match the file (fingerprint, codebook size)."""


class HvqImageError(HvqError):
    """An input image cannot be read or is not supported (alpha, size limits)."""


class HvqRecodeNeeded(HvqModelError):
    """Dropping a level means re-coding another that was coded given it: that needs the model's prior."""


class HvqUsageError(HvqError, ValueError):
    """A Python API argument has the wrong type or value (``levels="x"``, ``level=8.5``, ``decompress(123)``).

    A ``ValueError`` too, as Python's own argument errors are; the command
    line checks its arguments itself, so this reaches users of the library.
    """


class HvqConfigError(HvqError, ValueError):
    """A setting is refused: a model or training config (its file or its options), a device, a tile size.

    Also a ``ValueError``, as a bad argument is in Python, so code that
    builds configs directly may catch either.
    """


class HvqDataError(HvqError):
    """A data folder cannot be used: it is missing, holds no image, or none large enough."""


class HvqTrainingError(HvqError):
    """A training run cannot go on: its loss kept diverging after every rollback."""


class HvqImageWarning(UserWarning):
    """Something of the input that hvq cannot keep (later frames, an unusable ICC profile).

    A warning, not an error: the image is still coded.  It lives here, beside
    the errors, so that the command line can route it without importing the
    image reader (``hvq info`` starts without numpy or Pillow).
    """

