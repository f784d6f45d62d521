"""Tests of the .hvq container (``hvq.bitstream.container``) and its summary (``hvq.bitstream.info``).

Torch-free on purpose: files are built directly with ``write_file`` from
seeded random index grids and frequency tables, so nothing here imports torch
or ``hvq.codec``.  Hostile input follows Pillow's ``Tests/test_file_qoi.py``:
every truncation length, every flipped bit, unknown versions and chunks, and a
hypothesis property that any bytes parse or raise ``HvqFormatError``.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import mutate, mutations
from hvq.bitstream import container
from hvq.bitstream.coder import decode_indices, encode_indices, index_checksum
from hvq.bitstream.container import (
    CODER_RANGE_STATIC,
    FORMAT_VERSION,
    MAX_PIXELS,
    SIGNATURE,
    Header,
    LevelChunk,
    ParsedFile,
    max_payload_bytes,
    parse,
    read_bytes,
    strip_levels,
    write_file,
)
from hvq.bitstream.errors import HvqError, HvqFormatError, HvqRecodeNeeded, HvqTruncatedError
from hvq.bitstream.info import FileInfo, inspect_file

# The layout, written out here independently of the library (FORMAT.md).
# version 2: version, flags, width, height, grid multiple, level mask, K, model fingerprint,
# prior kind, reserved, prior fingerprint (version 1 ends after the model fingerprint)
HEAD = struct.Struct(">HHIIHHI16sHH16s")
HEAD_V1 = struct.Struct(">HHIIHHI16s")
LEVL = struct.Struct(">HHHBBII")  # factor, grid h, grid w, coder, reserved, index crc, payload length
HEAD_START = len(SIGNATURE)
HEAD_END = HEAD_START + 12 + HEAD.size

FINGERPRINT = bytes(range(100, 116))
K = 16
FACTORS = (16, 8, 4)


@dataclass
class Built:
    header: Header
    chunks: dict[int, LevelChunk]  # by factor
    tables: dict[int, np.ndarray]
    indices: dict[int, np.ndarray]


def build(width=20, height=12, multiple=16, factors=FACTORS, seed=0) -> Built:
    """Level chunks for a small image: 20x12 pads to 32x16, grids 1x2, 2x4, 4x8 (non-square)."""
    rng = np.random.default_rng(seed)
    header = Header(width, height, multiple, K, FINGERPRINT, ())
    chunks, tables, indices = {}, {}, {}
    for f in factors:
        gh, gw = header.grid_shape(f)
        tables[f] = rng.integers(1, 1000, K)
        indices[f] = rng.integers(0, K, (gh, gw))
        payload = encode_indices(indices[f], tables[f])
        chunks[f] = LevelChunk(f, gh, gw, CODER_RANGE_STATIC, index_checksum(indices[f]), payload)
    return Built(header, chunks, tables, indices)


SMALL = build()
VALID = write_file(SMALL.header, list(SMALL.chunks.values()))


# -- raw chunk helpers, independent of the library ------------------------------


def raw_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))


def spans(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of every chunk of a well-formed file."""
    out, pos = [], len(SIGNATURE)
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, pos, pos + 12 + length))
        pos += 12 + length
    assert pos == len(data)
    return out


def split(data: bytes) -> list[list]:
    """[type, body] of every chunk of a well-formed file."""
    return [[kind, data[start + 8 : end - 4]] for kind, start, end in spans(data)]


def join(chunks) -> bytes:
    return SIGNATURE + b"".join(raw_chunk(kind, body) for kind, body in chunks)


HEAD_FIELDS = ("version", "flags", "width", "height", "multiple", "mask", "k", "fingerprint",
               "prior_kind", "reserved", "prior_fingerprint")
LEVL_FIELDS = ("factor", "gh", "gw", "coder", "reserved", "crc", "length")


def patch_head(data: bytes, **changes) -> bytes:
    """Rewrite HEAD fields and recompute its CRC, so only the field itself is wrong."""
    chunks = split(data)
    assert chunks[0][0] == b"HEAD"
    fields = dict(zip(HEAD_FIELDS, HEAD.unpack(chunks[0][1])))
    fields.update(changes)
    chunks[0][1] = HEAD.pack(*(fields[name] for name in HEAD_FIELDS))
    return join(chunks)


def patch_levl(data: bytes, factor: int, payload: bytes | None = None, **changes) -> bytes:
    """Rewrite one LEVL chunk's fixed fields (and payload) with a valid CRC."""
    chunks = split(data)
    for chunk in chunks:
        if chunk[0] == b"LEVL" and LEVL.unpack_from(chunk[1])[0] == factor:
            fields = dict(zip(LEVL_FIELDS, LEVL.unpack_from(chunk[1])))
            body = chunk[1][LEVL.size :] if payload is None else payload
            fields["length"] = len(body)
            fields.update(changes)
            chunk[1] = LEVL.pack(*(fields[name] for name in LEVL_FIELDS)) + body
            return join(chunks)
    raise AssertionError(f"no LEVL {factor}")


def levl_bytes(data: bytes, chunk: LevelChunk) -> bytes:
    return data[chunk.offset : chunk.offset + chunk.chunk_bytes]


def same_content(a: LevelChunk, b: LevelChunk) -> bool:
    return (a.factor, a.grid_height, a.grid_width, a.coder, a.index_crc, a.payload) == (
        b.factor, b.grid_height, b.grid_width, b.coder, b.index_crc, b.payload,
    )


def test_helpers_agree_with_the_writer():
    assert join(split(VALID)) == VALID
    assert [kind for kind, _, _ in spans(VALID)] == [b"HEAD", b"LEVL", b"LEVL", b"LEVL", b"DONE"]
    assert spans(VALID)[0][1:] == (HEAD_START, HEAD_END)


def test_format_layer_imports_without_torch():
    code = (
        "import sys; import hvq.bitstream.container, hvq.bitstream.coder, hvq.bitstream.info; "
        "bad = [m for m in ('torch', 'hvq.codec') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- write -> parse round trip ------------------------------------------------------

SUBSETS = [s for n in (1, 2, 3) for s in itertools.combinations(FACTORS, n)]
ORDERINGS = [p for s in SUBSETS for p in itertools.permutations(s)]


@pytest.mark.parametrize("given_order", ORDERINGS, ids=lambda p: "-".join(map(str, p)))
def test_round_trip_of_header_and_levels(given_order):
    built = SMALL
    data = write_file(built.header, [built.chunks[f] for f in given_order])
    parsed = parse(data)
    stored = tuple(sorted(given_order, reverse=True))  # coarse first, whatever order they came in

    assert isinstance(parsed, ParsedFile)
    assert parsed.complete and parsed.missing == () and parsed.truncated_reason == ""
    assert parsed.total_bytes == len(data)
    h = parsed.header
    assert (h.width, h.height, h.grid_multiple, h.codebook_size) == (20, 12, 16, K)
    assert h.model_fingerprint == FINGERPRINT
    assert h.factors == stored
    assert h.version == FORMAT_VERSION
    assert tuple(c.factor for c in parsed.levels) == stored

    offset = HEAD_END
    for chunk in parsed.levels:
        original = built.chunks[chunk.factor]
        assert same_content(chunk, original)
        assert chunk.offset == offset
        assert chunk.chunk_bytes == 12 + LEVL.size + len(original.payload)
        assert levl_bytes(data, chunk) == raw_chunk(
            b"LEVL", data[chunk.offset + 8 : chunk.offset + chunk.chunk_bytes - 4]
        )
        assert parsed.level(chunk.factor) is chunk
        offset += chunk.chunk_bytes
        # the seam to the coder: each chunk decodes on its own to the indices it was made from
        decoded = decode_indices(chunk.payload, built.tables[chunk.factor], (chunk.grid_height, chunk.grid_width))
        np.testing.assert_array_equal(decoded, built.indices[chunk.factor])
        assert index_checksum(decoded) == chunk.index_crc
    assert data[offset:] == raw_chunk(b"DONE", b"")


@pytest.mark.parametrize(
    "width, height, multiple, factors",
    [(1, 1, 1, (1,)), (1, 1, 16, (16, 8, 4)), (33, 7, 8, (8, 2, 1)), (300, 200, 64, (64, 16, 4)), (2**15, 1, 1024, (1024,))],
)
def test_round_trip_of_other_geometries(width, height, multiple, factors):
    built = build(width, height, multiple, factors, seed=3)
    data = write_file(built.header, list(built.chunks.values()))
    parsed = parse(data)
    assert parsed.complete
    assert (parsed.header.width, parsed.header.height, parsed.header.grid_multiple) == (width, height, multiple)
    for chunk in parsed.levels:
        assert (chunk.grid_height, chunk.grid_width) == built.header.grid_shape(chunk.factor)
        assert same_content(chunk, built.chunks[chunk.factor])


def test_header_geometry():
    h = Header(20, 12, 16, K, FINGERPRINT, FACTORS)
    assert h.padded_size == (16, 32)
    assert h.grid_shape(16) == (1, 2) and h.grid_shape(8) == (2, 4) and h.grid_shape(4) == (4, 8)


def test_writer_takes_levels_from_the_chunks_not_the_header():
    header = Header(20, 12, 16, K, FINGERPRINT, factors=(2, 1), version=7)
    parsed = parse(write_file(header, [SMALL.chunks[8]]))
    assert parsed.header.factors == (8,)
    assert parsed.header.version == FORMAT_VERSION


def test_writer_refuses_a_grid_that_does_not_match_the_image():
    chunk = SMALL.chunks[8]
    wrong = LevelChunk(8, chunk.grid_width, chunk.grid_height, chunk.coder, chunk.index_crc, chunk.payload)
    with pytest.raises(ValueError, match="level 8 grid does not match"):
        write_file(SMALL.header, [wrong])


def test_writer_refuses_a_level_twice():
    with pytest.raises(HvqFormatError, match="stored once"):
        write_file(SMALL.header, [SMALL.chunks[8], SMALL.chunks[8]])


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(width=0), "image size 0x12"),
        (dict(height=2**15 + 1), "outside"),
        (dict(width=2**15, height=2**14), "exceeds"),
        (dict(grid_multiple=12), "grid multiple 12"),
        (dict(model_fingerprint=b"short"), "16 bytes"),
        (dict(codebook_size=1), "codebook size 1"),
    ],
)
def test_writer_refuses_an_invalid_header(changes, match):
    with pytest.raises(HvqFormatError, match=match):
        write_file(replace(SMALL.header, **changes), [SMALL.chunks[16]])


def test_writer_refuses_a_factor_above_the_grid_multiple():
    built = build(64, 64, 32, (32,))
    with pytest.raises(HvqFormatError, match="level factor 32"):
        write_file(replace(built.header, grid_multiple=16), [replace(built.chunks[32], grid_height=2, grid_width=2)])


def test_writer_refuses_a_file_without_levels():
    with pytest.raises((ValueError, HvqFormatError)):
        write_file(SMALL.header, [])


# -- strip_levels ------------------------------------------------------------------


@pytest.mark.parametrize("keep", SUBSETS, ids=lambda s: "-".join(map(str, s)))
def test_strip_keeps_exactly_the_chosen_levels_verbatim(keep):
    original = parse(VALID)
    stripped = strip_levels(VALID, tuple(reversed(keep)))  # any order
    parsed = parse(stripped)
    assert parsed.complete
    assert parsed.header.factors == keep
    assert tuple(c.factor for c in parsed.levels) == keep
    for chunk in parsed.levels:
        assert levl_bytes(stripped, chunk) == levl_bytes(VALID, original.level(chunk.factor))
    # HEAD differs from the original only in the level mask
    old = dict(zip(HEAD_FIELDS, HEAD.unpack(split(VALID)[0][1])))
    new = dict(zip(HEAD_FIELDS, HEAD.unpack(split(stripped)[0][1])))
    assert new.pop("mask") == sum(keep)
    old.pop("mask")
    assert new == old
    if keep == FACTORS:
        assert stripped == VALID


def test_strip_of_a_stripped_file():
    stripped = strip_levels(strip_levels(VALID, [16, 4]), [4])
    assert stripped == strip_levels(VALID, [4])


@pytest.mark.parametrize("keep, match", [((2,), r"level 2 is not stored \(stored: 16, 8, 4\)"), ((8, 32), "level 32")])
def test_strip_of_a_level_not_stored_is_refused(keep, match):
    with pytest.raises(HvqFormatError, match=match) as info:
        strip_levels(VALID, keep)
    assert not isinstance(info.value, HvqTruncatedError)


def test_strip_of_a_level_already_stripped_names_it():
    with pytest.raises(HvqFormatError, match=r"level 8 is not stored \(stored: 16, 4\)"):
        strip_levels(strip_levels(VALID, (16, 4)), (8,))


def test_strip_of_a_truncated_file_is_refused():
    with pytest.raises(HvqTruncatedError, match="cannot strip a truncated file"):
        strip_levels(VALID[:-1], (16,))


def test_strip_of_a_damaged_file_is_refused():
    with pytest.raises(HvqFormatError, match="bad signature"):
        strip_levels(b"GIF89a" + VALID[6:], (16,))


def test_strip_of_every_level_is_refused():
    with pytest.raises(HvqFormatError):
        strip_levels(VALID, ())


def test_strip_with_a_level_named_twice_keeps_it_once_or_raises_an_hvq_error():
    try:
        stripped = strip_levels(VALID, (8, 8))
    except HvqError:
        return
    assert parse(stripped).header.factors == (8,)


# -- refused headers ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"GIF89a", b"\x89PNG\r\n\x1a\n" + VALID[8:], b"\x89HVQ\r\n\x1a\r" + VALID[8:]])
def test_wrong_signature_or_empty_input(data):
    with pytest.raises(HvqFormatError, match="bad signature"):
        parse(data)


def test_newer_format_version_is_named():
    with pytest.raises(HvqFormatError, match=r"format version 4 is newer than this hvq reads \(up to 3\)"):
        parse(patch_head(VALID, version=4))
    with pytest.raises(HvqFormatError, match="format version 65535 is newer"):
        parse(patch_head(VALID, version=0xFFFF))


def as_version_1(data: bytes) -> bytes:
    """The same file as format version 1 wrote it: a 36-byte HEAD without the prior fields."""
    chunks = split(data)
    fields = HEAD.unpack(chunks[0][1])
    assert fields[8:] == (container.PRIOR_STATIC, 0, bytes(16))
    chunks[0][1] = HEAD_V1.pack(1, *fields[1:8])
    return join(chunks)


def test_version_1_files_still_parse():
    old = as_version_1(VALID)
    parsed = parse(old)
    assert parsed.header.version == 1 and parsed.complete
    assert parsed.header.prior_kind == container.PRIOR_STATIC and parsed.header.prior_fingerprint == bytes(16)
    assert [c.payload for c in parsed.levels] == [c.payload for c in parse(VALID).levels]
    assert strip_levels(old, [8]) == strip_levels(VALID, [8])  # written as version 2, same levels


def test_version_1_head_of_version_2_size_is_refused():
    chunks = split(as_version_1(VALID))
    chunks[0][1] += bytes(HEAD.size - HEAD_V1.size)
    with pytest.raises(HvqFormatError, match=f"HEAD chunk has {HEAD.size} bytes, expected {HEAD_V1.size}"):
        parse(join(chunks))


@pytest.mark.parametrize("coder", [container.CODER_CONTEXT, container.CODER_CONTEXT_PARENT])
def test_version_1_knows_no_context_coders(coder):
    old = as_version_1(patch_levl(VALID, 8, coder=coder))
    with pytest.raises(HvqFormatError, match=f"chunk LEVL \\(level 8\\) uses unknown coder {coder}"):
        parse(old)


def test_context_coder_needs_a_context_prior():
    with pytest.raises(HvqFormatError, match=r"LEVL \(level 8\) is context-coded but HEAD declares no context prior"):
        parse(patch_levl(VALID, 8, coder=container.CODER_CONTEXT))


def test_parent_coder_needs_its_parent_stored():
    context = patch_head(VALID, prior_kind=container.PRIOR_CHECKERBOARD, prior_fingerprint=bytes(range(16)))
    ok = patch_levl(context, 8, coder=container.CODER_CONTEXT_PARENT)
    assert parse(ok).level(8).coder == container.CODER_CONTEXT_PARENT
    lone = patch_levl(patch_head(context, mask=8 | 4), 8, coder=container.CODER_CONTEXT_PARENT)
    lone = join([c for c in split(lone) if not (c[0] == b"LEVL" and LEVL.unpack_from(c[1])[0] == 16)])
    with pytest.raises(HvqFormatError, match=r"LEVL \(level 8\) is coded given level 16, which the file does not store"):
        parse(lone)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(prior_kind=7), "unknown prior kind 7"),
        (dict(reserved=1), "HEAD reserved field 0x0001 is not zero"),
        (dict(prior_fingerprint=b"\x01" * 16), "a static-prior file has a non-zero prior fingerprint"),
    ],
)
def test_prior_fields_are_checked(changes, match):
    with pytest.raises(HvqFormatError, match=match):
        parse(patch_head(VALID, **changes))


def test_strip_refuses_to_orphan_a_parent_coded_level():
    context = patch_head(VALID, prior_kind=container.PRIOR_CHECKERBOARD, prior_fingerprint=bytes(range(16)))
    context = patch_levl(context, 8, coder=container.CODER_CONTEXT_PARENT)
    assert parse(strip_levels(context, [16, 8])).level(8).coder == container.CODER_CONTEXT_PARENT
    with pytest.raises(HvqRecodeNeeded, match="level 8 is coded given level 16: dropping that level re-codes it"):
        strip_levels(context, [8, 4])


def test_format_version_zero_is_refused():
    with pytest.raises(HvqFormatError, match="format version 0 is not valid"):
        parse(patch_head(VALID, version=0))


@pytest.mark.parametrize("flags", [1, 0x8000])
def test_non_zero_flags_are_refused(flags):
    with pytest.raises(HvqFormatError, match=f"HEAD flags 0x{flags:04x} are reserved"):
        parse(patch_head(VALID, flags=flags))


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(width=2**31), "image size 2147483648x12 outside"),
        (dict(height=2**32 - 1), "image size 20x4294967295 outside"),
        (dict(width=0), "image size 0x12 outside"),
        (dict(width=2**15, height=2**14), f"image of {2**29} pixels exceeds {MAX_PIXELS}"),
        (dict(multiple=0), "grid multiple 0 is not a power of two"),
        (dict(multiple=24), "grid multiple 24 is not a power of two"),
        (dict(multiple=2048, mask=2048), "grid multiple 2048 is not a power of two up to 1024"),
        (dict(k=1), "codebook size 1 outside"),
        (dict(k=2**32 - 1), "codebook size 4294967295 outside"),
        (dict(mask=0), "HEAD declares no levels"),
        (dict(mask=16 | 32), "level factor 32 is not a power of two up to the grid multiple 16"),
        (dict(mask=1 << 15), "level factor 32768"),
    ],
)
def test_absurd_head_fields_are_refused_before_allocation(changes, match):
    data = patch_head(VALID, **changes)
    tracemalloc.start()
    try:
        with pytest.raises(HvqFormatError, match=match):
            parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_head_of_the_wrong_length_is_refused():
    chunks = split(VALID)
    chunks[0][1] = chunks[0][1] + b"\x00"
    with pytest.raises(HvqFormatError, match=f"HEAD chunk has {HEAD.size + 1} bytes, expected {HEAD.size}"):
        parse(join(chunks))


def test_duplicate_head_is_refused():
    chunks = split(VALID)
    chunks.insert(1, list(chunks[0]))
    with pytest.raises(HvqFormatError, match=f"second HEAD chunk at byte {HEAD_END}"):
        parse(join(chunks))


def test_first_chunk_must_be_head():
    chunks = split(VALID)
    chunks.insert(0, [b"meta", b"ancillary before HEAD"])
    with pytest.raises(HvqFormatError, match="first chunk is meta, expected HEAD"):
        parse(join(chunks))
    with pytest.raises(HvqFormatError, match="first chunk is LEVL, expected HEAD"):
        parse(join(split(VALID)[1:]))


# -- chunks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(5))
def test_chunk_with_a_bad_crc_is_refused(index):
    kind, start, end = spans(VALID)[index]
    data = bytearray(VALID)
    data[end - 1] ^= 0x01
    with pytest.raises(HvqFormatError, match=f"chunk {kind.decode()} at byte {start} fails its CRC"):
        parse(bytes(data))


@pytest.mark.parametrize("kind", [b"XTRA", b"Meta", b"\x00\x01\x02\x03", b"1abc"])
def test_unknown_critical_chunk_is_refused(kind):
    chunks = split(VALID)
    chunks.insert(2, [kind, b"data"])
    with pytest.raises(HvqFormatError, match="unknown critical chunk"):
        parse(join(chunks))


@pytest.mark.parametrize("position", [1, 2, 3, 4])
@pytest.mark.parametrize("body", [b"", b"any bytes the reader skips \x00\xff"])
def test_unknown_ancillary_chunk_is_skipped(position, body):
    chunks = split(VALID)
    chunks.insert(position, [b"meTa", body])
    data = join(chunks)
    parsed = parse(data)
    reference = parse(VALID)
    assert parsed.complete
    assert parsed.header == reference.header
    assert len(parsed.levels) == 3
    for chunk, ref in zip(parsed.levels, reference.levels):
        assert same_content(chunk, ref)
        assert levl_bytes(data, chunk) == levl_bytes(VALID, ref)


def test_ancillary_chunk_with_a_bad_crc_is_refused():
    chunks = split(VALID)
    chunks.insert(2, [b"meta", b"x"])
    data = bytearray(join(chunks))
    data[HEAD_END + 8] ^= 0xFF  # "x" -> damaged
    with pytest.raises(HvqFormatError, match="fails its CRC"):
        parse(bytes(data))


@pytest.mark.parametrize("extra", [b"\x00", b"junk", VALID])
def test_trailing_bytes_after_done_are_refused(extra):
    with pytest.raises(HvqFormatError, match=f"{len(extra)} bytes follow the DONE chunk"):
        parse(VALID + extra)


def test_done_must_be_empty():
    chunks = split(VALID)
    chunks[-1][1] = b"\x00"
    with pytest.raises(HvqFormatError, match="DONE chunk must be empty"):
        parse(join(chunks))


def test_levl_out_of_order_is_refused():
    chunks = split(VALID)
    chunks[1], chunks[2] = chunks[2], chunks[1]  # 8 before 16
    with pytest.raises(HvqFormatError, match=r"LEVL \(level 16\) is out of order"):
        parse(join(chunks))


def test_levl_stored_twice_is_refused():
    chunks = split(VALID)
    chunks.insert(2, list(chunks[1]))
    with pytest.raises(HvqFormatError, match=r"LEVL \(level 16\) is out of order"):
        parse(join(chunks))


def test_levl_not_declared_in_head_is_refused():
    with pytest.raises(HvqFormatError, match=r"chunk LEVL \(level 8\) is not declared in HEAD"):
        parse(patch_head(VALID, mask=16 | 4))


def test_level_declared_in_head_but_absent_is_refused():
    chunks = split(VALID)
    del chunks[2]  # LEVL 8
    with pytest.raises(HvqFormatError, match="HEAD declares levels 16,8,4 but the file holds 16,4"):
        parse(join(chunks))


@pytest.mark.parametrize("delta", [4, -4, 1])
def test_payload_length_field_disagreeing_with_the_chunk_is_refused(delta):
    length = len(SMALL.chunks[4].payload)
    with pytest.raises(HvqFormatError, match=rf"LEVL \(level 4\) at byte \d+ is damaged: payload length {length + delta} disagrees"):
        parse(patch_levl(VALID, 4, length=length + delta))


@pytest.mark.parametrize("gh, gw", [(2, 2), (2, 1), (0, 2), (65535, 65535)])
def test_grid_not_matching_the_image_is_refused(gh, gw):
    with pytest.raises(HvqFormatError, match=rf"LEVL \(level 16\) grid {gh}x{gw} does not match the image size"):
        parse(patch_levl(VALID, 16, gh=gh, gw=gw))


def test_unknown_coder_is_refused():
    with pytest.raises(HvqFormatError, match=r"LEVL \(level 8\) uses unknown coder 7"):
        parse(patch_levl(VALID, 8, coder=7))


def test_reserved_levl_byte_is_refused():
    with pytest.raises(HvqFormatError, match="non-zero reserved byte"):
        parse(patch_levl(VALID, 8, reserved=1))


@pytest.mark.parametrize("payload_bytes", [5, max_payload_bytes(2) + 4])
def test_impossible_payload_length_is_refused(payload_bytes):
    with pytest.raises(HvqFormatError, match=rf"LEVL \(level 16\) payload length {payload_bytes} is impossible"):
        parse(patch_levl(VALID, 16, payload=b"\x00" * payload_bytes))


def test_levl_shorter_than_its_fixed_fields_is_refused():
    chunks = split(VALID)
    chunks[1][1] = chunks[1][1][: LEVL.size - 1]
    with pytest.raises(HvqFormatError, match="shorter than its fixed fields"):
        parse(join(chunks))


def test_file_above_the_size_limit_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(container, "MAX_FILE_BYTES", len(VALID) - 1)
    with pytest.raises(HvqFormatError, match=f"file of {len(VALID)} bytes exceeds"):
        parse(VALID)
    path = tmp_path / "big.hvq"
    path.write_bytes(VALID)
    with pytest.raises(HvqFormatError, match=f"file of {len(VALID)} bytes exceeds"):
        read_bytes(path)


def test_level_lookup_of_a_level_never_declared():
    with pytest.raises(HvqFormatError, match=r"level 2 is not stored \(stored: 16, 8, 4\)") as info:
        parse(VALID).level(2)
    assert not isinstance(info.value, HvqTruncatedError)


# -- truncation, every length ------------------------------------------------------------------


def with_ancillary() -> bytes:
    chunks = split(VALID)
    chunks.insert(2, [b"note", b"between the levels"])
    return join(chunks)


@pytest.mark.parametrize("data", [VALID, with_ancillary()], ids=["plain", "ancillary"])
def test_every_truncation(data):
    whole = parse(data)
    assert whole.complete
    levl = [(start, end) for kind, start, end in spans(data) if kind == b"LEVL"]
    for n in range(len(data)):
        cut = data[:n]
        if n == 0:
            with pytest.raises(HvqFormatError, match="signature"):
                parse(cut)
            continue
        if n < HEAD_START:
            with pytest.raises(HvqTruncatedError, match="inside the signature"):
                parse(cut)
            continue
        if n < HEAD_END:
            with pytest.raises(HvqTruncatedError, match="HEAD"):
                parse(cut)
            continue
        parsed = parse(cut)
        assert not parsed.complete, n
        assert parsed.total_bytes == n
        assert parsed.header == whole.header
        expected = [whole.levels[i] for i, (_, end) in enumerate(levl) if end <= n]
        assert [c.factor for c in parsed.levels] == [c.factor for c in expected], n
        for chunk, ref in zip(parsed.levels, expected):
            assert same_content(chunk, ref)
            assert (chunk.offset, chunk.chunk_bytes) == (ref.offset, ref.chunk_bytes)
            assert levl_bytes(cut, chunk) == levl_bytes(data, ref)
        absent = tuple(f for f in FACTORS if f not in {c.factor for c in expected})
        assert parsed.missing == absent, n
        assert f"byte {n}" in parsed.truncated_reason
        for f in absent:
            with pytest.raises(HvqTruncatedError, match=f"level {f} is missing"):
                parsed.level(f)
        for chunk in expected:
            assert same_content(parsed.level(chunk.factor), chunk)
    assert parse(data[: len(data)]).complete


def test_truncated_file_is_reported_by_inspect():
    first_levl_end = spans(VALID)[1][2]
    info = inspect_file(VALID[:first_levl_end])
    assert not info.complete
    assert info.missing == (8, 4)
    assert [lv.factor for lv in info.levels] == [16]


# -- bit flips, every bit -----------------------------------------------------------------------


def test_every_bit_flip_is_detected():
    """Each of the file's bits flipped alone is reported as damage, never as a good or a cut file."""
    flips = 0
    for i in range(len(VALID)):
        for bit in range(8):
            data = bytearray(VALID)
            data[i] ^= 1 << bit
            with pytest.raises(HvqFormatError) as info:
                parse(bytes(data))
            assert not isinstance(info.value, HvqTruncatedError), (i, bit, str(info.value))
            flips += 1
    assert flips == 8 * len(VALID)


@pytest.mark.parametrize("kind", [b"HEAD", b"LEVL", b"DONE"])
def test_a_grown_length_field_is_damage_not_truncation(kind):
    start = next(s for k, s, _ in spans(VALID) if k == kind)
    (length,) = struct.unpack_from(">I", VALID, start)
    data = bytearray(VALID)
    struct.pack_into(">I", data, start, length + 1000)
    with pytest.raises(HvqFormatError, match="is damaged|expected 56|must be empty") as info:
        parse(bytes(data))
    assert not isinstance(info.value, HvqTruncatedError)


def test_a_grown_ancillary_length_reads_as_truncation():
    data = bytearray(with_ancillary())
    start = next(s for k, s, _ in spans(bytes(data)) if k == b"note")
    struct.pack_into(">I", data, start, 10**6)
    parsed = parse(bytes(data))
    assert not parsed.complete and "inside note" in parsed.truncated_reason


# -- hypothesis: anything parses or raises HvqFormatError ------------------------------------------


def parse_or_format_error(data: bytes) -> ParsedFile | None:
    try:
        parsed = parse(data)
    except HvqFormatError:
        return None
    assert isinstance(parsed, ParsedFile)
    return parsed


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda b: SIGNATURE + b),
        st.binary(max_size=200).map(lambda b: VALID[:HEAD_END] + b),
    )
)
def test_any_bytes_parse_or_raise_format_error(data):
    parse_or_format_error(data)
    try:
        inspect_file(data)
    except HvqFormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(mutations())
def test_mutated_valid_file_parses_or_raises_format_error(edits):
    data = mutate(VALID, edits)
    parsed = parse_or_format_error(data)
    if parsed is not None and parsed.complete:
        # the CRCs let nothing through but the original content
        reference = parse(VALID)
        assert parsed.header == reference.header
        assert all(same_content(a, b) for a, b in zip(parsed.levels, reference.levels))


# -- info -----------------------------------------------------------------------------------------


def test_inspect_of_a_known_file():
    info = inspect_file(VALID)
    assert isinstance(info, FileInfo)
    pixels = 20 * 12
    assert (info.version, info.width, info.height, info.grid_multiple, info.codebook_size) == (2, 20, 12, 16, K)
    assert info.model_fingerprint == FINGERPRINT.hex()
    assert info.file_bytes == len(VALID)
    assert info.bpp == round(8 * len(VALID) / pixels, 5)
    assert info.complete and info.missing == ()
    assert [lv.factor for lv in info.levels] == [16, 8, 4]
    assert [(lv.grid_height, lv.grid_width) for lv in info.levels] == [(1, 2), (2, 4), (4, 8)]
    for lv in info.levels:
        chunk = SMALL.chunks[lv.factor]
        n = chunk.grid_height * chunk.grid_width
        assert lv.payload_bytes == len(chunk.payload)
        assert lv.chunk_bytes == 12 + LEVL.size + len(chunk.payload)
        assert lv.bits_per_index == pytest.approx(8 * len(chunk.payload) / n, abs=1e-4)
        assert lv.bpp == pytest.approx(8 * lv.chunk_bytes / pixels, abs=1e-5)
        assert lv.index_crc == f"{chunk.index_crc:08x}"
    assert sum(lv.chunk_bytes for lv in info.levels) == len(VALID) - HEAD_END - 12
    json.dumps(info.to_dict())  # plain data, for `hvq info --json`


def test_inspect_of_a_path_matches_bytes(tmp_path):
    path = tmp_path / "small.hvq"
    path.write_bytes(VALID)
    assert inspect_file(path) == inspect_file(VALID)
    assert inspect_file(str(path)) == inspect_file(VALID)


def test_read_bytes_of_a_missing_path(tmp_path):
    with pytest.raises(HvqFormatError, match="cannot read"):
        read_bytes(tmp_path / "absent.hvq")
    with pytest.raises(HvqFormatError, match="cannot read"):
        inspect_file(str(tmp_path / "absent.hvq"))


def test_read_bytes_of_a_directory(tmp_path):
    with pytest.raises(HvqFormatError, match="cannot read"):
        read_bytes(tmp_path)


def test_read_bytes_passes_bytes_through():
    assert read_bytes(bytearray(VALID)) == VALID
    assert read_bytes(memoryview(VALID)) == VALID


def test_public_inspect_matches_inspect_file():
    import hvq

    assert hvq.inspect(VALID) == inspect_file(VALID)


# FORMAT.md section 15's worked example, byte for byte: test vectors for ports.
WORKED_EXAMPLE = bytes.fromhex(
    "894856510d0a1a0a000000384845414400020000000000140000000c0010001800000010771ecfbe803d1e11"
    "0191f0f0ba14704600000000000000000000000000000000000000006dc0055b000000144c45564c00100001"
    "00020100218c0696000000048800000044af50bf000000184c45564c00080002000401008c9d20aa00000008"
    "eeee3332fbc000009a522ff900000000444f4e4526b80d1f"
)
# The same file as format version 1 wrote it (hvq 0.1): a 36-byte HEAD.
WORKED_EXAMPLE_V1 = bytes.fromhex(
    "894856510d0a1a0a000000244845414400010000000000140000000c0010001800000010771ecfbe803d1e11"
    "0191f0f0ba1470466f4c3bbe000000144c45564c0010000100020100218c0696000000048800000044af50bf"
    "000000184c45564c00080002000401008c9d20aa00000008eeee3332fbc000009a522ff900000000444f4e45"
    "26b80d1f"
)


@pytest.mark.parametrize("vector", [WORKED_EXAMPLE, WORKED_EXAMPLE_V1], ids=["v2", "v1"])
def test_worked_example_of_the_spec(vector):
    parsed = parse(vector)
    assert parsed.header.version == (2 if vector is WORKED_EXAMPLE else 1)
    assert parsed.complete and parsed.header.factors == (16, 8)
    assert (parsed.header.width, parsed.header.height) == (20, 12)
    ones = np.ones(16, dtype=np.int32)
    coarse, fine = parsed.level(16), parsed.level(8)
    assert decode_indices(coarse.payload, ones, (1, 2)).tolist() == [[8, 8]]
    assert decode_indices(fine.payload, ones, (2, 4)).tolist() == [[14, 14, 14, 14], [3, 3, 3, 3]]
    assert index_checksum(np.array([[8, 8]])) == coarse.index_crc
    assert write_file(parsed.header, parsed.levels) == WORKED_EXAMPLE


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this system")
def test_an_endless_device_is_refused_at_its_signature():
    """/dev/zero reports size 0 and never ends: read_bytes stops at the 8 bytes of a wrong signature."""
    data = read_bytes("/dev/zero")
    assert data == bytes(len(SIGNATURE))
    with pytest.raises(HvqFormatError, match="bad signature"):
        parse(data)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_stream_with_no_size_is_read_up_to_the_limit_only(tmp_path, monkeypatch):
    """A pipe that sends a valid signature, then more than the limit: refused, not read to the end."""
    monkeypatch.setattr(container, "MAX_FILE_BYTES", 4096)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)

    def endless_writer():
        try:
            with open(pipe, "wb") as f:
                f.write(SIGNATURE)
                while True:
                    f.write(bytes(1024))
        except BrokenPipeError:  # the reader stopped: what this test wants
            pass

    writer = threading.Thread(target=endless_writer, daemon=True)
    writer.start()
    with pytest.raises(HvqFormatError, match="exceeds the 4096-byte limit"):
        read_bytes(pipe)
    writer.join(timeout=10)
    assert not writer.is_alive()
