"""What the fuzzers feed bytes to: the reader, the range decoder and the whole decoder.

The contract under test (issue 6, FORMAT.md): any bytes either decode or
raise an ``HvqError``; nothing else escapes, nothing hangs, and nothing
allocates beyond what the header declares.  Each target returns quietly for
both outcomes and lets anything else propagate, which the fuzzer reports as
a crash.  ``tests/test_fuzz.py`` runs them under hypothesis in CI;
``fuzz_hvq.py`` runs them under atheris (coverage-guided).

Random bytes almost never carry a valid CRC, so a fuzzer would spend its
time on the CRC check.  ``repair_crcs`` rewrites every complete chunk's CRC
(as libpng's fuzzer ignores CRCs), and the targets apply it when the first
input byte is odd, so half the inputs reach the field checks, the range
decoder and the transforms.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path


from hvq.bitstream.container import SIGNATURE, parse
from hvq.bitstream.errors import HvqError
from hvq.bitstream.info import inspect_file
from hvq.bitstream.levels import decode_grid, strip
from hvq.bitstream.prior_tables import PriorTables

HERE = Path(__file__).resolve().parent
FUZZ_MODEL = HERE / "fuzz-model.safetensors"  # a tiny random model (K = 16) with a context prior, made by make_corpus.py
CORPUS = HERE / "corpus"


def repair_crcs(data: bytes) -> bytes:
    """Give every complete chunk after the signature a correct CRC; leave everything else."""
    out = bytearray(data)
    pos = len(SIGNATURE)
    while pos + 12 <= len(out):
        (length,) = struct.unpack_from(">I", out, pos)
        end = pos + 12 + length
        if end > len(out):
            break
        struct.pack_into(">I", out, end - 4, zlib.crc32(out[pos + 4 : end - 4]))
        pos = end
    return bytes(out)


def prepare(data: bytes) -> bytes:
    """The bytes a target parses: the input after its mode byte, CRC-repaired if the mode byte is odd."""
    if not data:
        return data
    body = data[1:]
    return repair_crcs(body) if data[0] & 1 else body


@lru_cache(maxsize=1)
def fuzz_prior() -> PriorTables:
    """The fuzz model's prior tables, read with safetensors' numpy API (no torch)."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(FUZZ_MODEL, "np") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    fingerprint = bytes.fromhex(meta.get("prior_fingerprint", "00" * 16))
    return PriorTables.from_tensors(load_file(FUZZ_MODEL), config["factors"], config["codebook_size"], fingerprint)


def container_target(data: bytes) -> None:
    """Parse, summarise, range-decode every whole level (parents first) and strip: the torch-free reader."""
    data = prepare(data)
    try:
        parsed = parse(data)
        summary = inspect_file(data)
        assert summary.complete == parsed.complete
        prior = fuzz_prior()
        decoded: dict = {}
        for chunk in parsed.levels:
            if chunk.factor in prior.static:
                grid = decode_grid(parsed, chunk.factor, prior, decoded)
                assert grid.shape == (chunk.grid_height, chunk.grid_width)
        if parsed.complete:
            for chunk in parsed.levels:
                kept = parse(strip(data, [chunk.factor], prior))
                assert kept.complete and kept.levels[0].index_crc == chunk.index_crc
    except HvqError:
        pass


@lru_cache(maxsize=1)
def fuzz_codec():
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(FUZZ_MODEL)


def codec_target(data: bytes) -> None:
    """Decode every stored level and the partial preview through the model, as ``hvq decompress`` does."""
    data = prepare(data)
    codec = fuzz_codec()
    try:
        parsed = parse(data)
    except HvqError:
        return
    for level in [None, *(c.factor for c in parsed.levels)]:
        try:
            image = codec.decompress(data, level, partial=True)
        except HvqError:
            continue
        assert image.size == (parsed.header.width, parsed.header.height) and image.mode == "RGB"
