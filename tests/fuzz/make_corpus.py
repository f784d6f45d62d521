"""Regenerate the fuzz model and the seed corpus: ``python tests/fuzz/make_corpus.py``.

The seeds are small valid files (every subset of levels, odd sizes, a
grayscale image, an ancillary chunk) and some damaged ones (cut at chunk
boundaries and inside chunks), so that the fuzzer starts from every branch
of the reader.  Every seed starts with the targets' mode byte (``targets.prepare``):
0x00, so the seeds are parsed exactly as stored.
"""

from __future__ import annotations

import itertools
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # conftest.make_tiny_model

from conftest import make_tiny_model  # noqa: E402
from targets import CORPUS, FUZZ_MODEL  # noqa: E402

from hvq.bitstream.container import parse  # noqa: E402


def images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(6)
    y, x = np.mgrid[0:37, 0:45]
    smooth = np.stack([x * 5, y * 6, (x + y) * 3], axis=-1) % 256
    return {
        "smooth45x37": Image.fromarray(smooth.astype(np.uint8), "RGB"),
        "noise20x12": Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8), "RGB"),
        "gray16x16": Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L"),
        "tall3x70": Image.fromarray(rng.integers(0, 256, (70, 3, 3), dtype=np.uint8), "RGB"),
    }


def with_ancillary(data: bytes) -> bytes:
    """Insert an ancillary chunk after HEAD."""
    head_end = 8 + 12 + struct.unpack_from(">I", data, 8)[0]
    body = b"tEXt" + b"made by make_corpus.py"
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return data[:head_end] + chunk + data[head_end:]


def as_version_1(codec, image: Image.Image) -> bytes:
    """The image as format version 1 stored it: static tables and a 36-byte HEAD."""
    from dataclasses import replace

    from hvq.bitstream.prior_tables import PriorTables
    from hvq.codec.runtime.pipeline import Codec

    static = Codec(replace(codec.model, prior=PriorTables(codec.model.prior.static)))
    data = static.compress(image)
    length, = struct.unpack_from(">I", data, 8)
    head = b"\x00\x01" + data[18 : 16 + 36]  # version 1, then the fields up to the model fingerprint
    rest = data[8 + 12 + length :]
    return data[:8] + struct.pack(">I", 36) + b"HEAD" + head + struct.pack(">I", zlib.crc32(b"HEAD" + head)) + rest


def main() -> None:
    make_tiny_model(FUZZ_MODEL, seed=6, context=True)
    from hvq.codec.runtime.pipeline import Codec

    codec = Codec.for_model(FUZZ_MODEL)
    shutil.rmtree(CORPUS, ignore_errors=True)
    CORPUS.mkdir()
    seeds: dict[str, bytes] = {}
    for name, image in images().items():
        for n in (1, 2, 3):
            for levels in itertools.combinations((16, 8, 4), n):
                seeds[f"{name}-{'-'.join(map(str, levels))}"] = codec.compress(image, levels)
    whole = seeds["smooth45x37-16-8-4"]
    seeds["smooth45x37-ancillary"] = with_ancillary(whole)
    for chunk in parse(whole).levels:
        end = chunk.offset + chunk.chunk_bytes
        seeds[f"smooth45x37-cut-after-{chunk.factor}"] = whole[:end]
        seeds[f"smooth45x37-cut-inside-{chunk.factor}"] = whole[: end - 5]
    seeds["smooth45x37-cut-inside-head"] = whole[:30]
    seeds["smooth45x37-version-1"] = as_version_1(codec, images()["smooth45x37"])
    for name, data in seeds.items():
        (CORPUS / f"{name}.hvq").write_bytes(b"\x00" + data)
    print(f"{len(seeds)} seeds in {CORPUS}, model {FUZZ_MODEL} ({FUZZ_MODEL.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
