"""Entropy coding of one level's index grid with constriction's range coder.

The model is a categorical distribution given as an integer frequency table
(every entry >= 1, total <= 2**16, so no index costs much more than 16 bits
and the container can bound payload sizes).  Integers are exact in float32, and
constriction turns them into its fixed-point table by a deterministic
algorithm, so encoder and decoder build bit-identical probabilities on any
machine.  ``perfect=False`` is passed explicitly: it selects constriction's
fast, documented quantisation, and the library has announced that its default
will change.

The coder's 32-bit words are serialised big-endian here, never in native
order.  The payload carries no length of its own: the grid size comes from
the container.
"""

from __future__ import annotations

import zlib

import constriction
import numpy as np

from hvq.bitstream.errors import HvqFormatError, HvqModelError

MAX_TABLE_TOTAL = 1 << 16  # exact in float32; bounds the cost of any index near 16 bits


def check_freqs(freqs: np.ndarray) -> np.ndarray:
    """Validate an integer frequency table and return it as the float32 array constriction takes."""
    table = np.asarray(freqs)
    if table.ndim != 1 or table.size < 2:
        raise HvqModelError("frequency table must be 1-D with at least 2 entries")
    if not np.issubdtype(table.dtype, np.integer):
        raise HvqModelError("frequency table must hold integers")
    if table.min() < 1:
        raise HvqModelError("frequency table has an entry below 1: some index could not be coded")
    if int(table.sum(dtype=np.int64)) > MAX_TABLE_TOTAL:
        raise HvqModelError(f"frequency table total exceeds {MAX_TABLE_TOTAL}")
    return table.astype(np.float32)


def _model(freqs: np.ndarray):
    return constriction.stream.model.Categorical(check_freqs(freqs), perfect=False)


def index_checksum(indices: np.ndarray) -> int:
    """CRC-32 of the indices in raster order as big-endian uint16: a desync check."""
    return zlib.crc32(np.ascontiguousarray(indices, dtype=">u2").tobytes())


def encode_indices(indices: np.ndarray, freqs: np.ndarray) -> bytes:
    """Range-code a grid of indices (raster order) with a frequency table; returns the payload."""
    symbols = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= len(freqs)):
        raise ValueError(f"indices must lie in [0, {len(freqs)})")
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols.astype(np.int32), _model(freqs))
    return encoder.get_compressed().astype(">u4").tobytes()


def decode_indices(payload: bytes, freqs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of ``encode_indices``: payload -> (H, W) uint16 grid."""
    if len(payload) % 4:
        raise HvqFormatError("payload length is not a multiple of 4 bytes")
    words = np.frombuffer(payload, dtype=">u4").astype(np.uint32)
    model = _model(freqs)  # a bad table is the model's fault, not the file's
    decoder = constriction.stream.queue.RangeDecoder(words)
    count = int(shape[0]) * int(shape[1])
    try:
        symbols = decoder.decode(model, count)
    except Exception as exc:  # constriction reports a corrupt stream with a bare error
        raise HvqFormatError(f"payload does not decode: {exc}") from None
    return np.asarray(symbols, dtype=np.uint16).reshape(shape)


def decode_level(payload: bytes, freqs: np.ndarray, shape: tuple[int, int], index_crc: int, factor: int) -> np.ndarray:
    """Decode one stored level and check its index CRC, so that a desync is an error, not a wrong image."""
    grid = decode_indices(payload, freqs, shape)
    if index_checksum(grid) != index_crc:
        raise HvqFormatError(f"level {factor} indices fail their checksum: the stream and prior disagree")
    return grid
