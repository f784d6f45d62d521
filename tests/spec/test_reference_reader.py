"""The spec against the code: an independent reader, written from FORMAT.md, beside hvq's.

``reference_reader.py`` imports nothing from hvq and decodes with its own
range decoder (FORMAT.md section 8.2).  Here it reads the fuzz corpus, the
shipped version-1 file, files coded with the shipped model's context prior,
mutated files and the coder test vectors (``vectors.json``), and every
outcome is compared with hvq's reader: the same parse, the same index grids,
the same class of refusal.  If FORMAT.md and the code drift apart, one of
these fails.  Torch-free.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from functools import lru_cache
from pathlib import Path

import constriction
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "fuzz"))

import reference_reader as ref  # noqa: E402
import targets  # noqa: E402
from conftest import mutate, mutations  # noqa: E402
from hvq.bitstream import coder, context  # noqa: E402
from hvq.bitstream.container import parse  # noqa: E402
from hvq.bitstream.errors import HvqFormatError, HvqModelError, HvqTruncatedError  # noqa: E402
from hvq.bitstream.levels import decode_grid, encode_levels, header_prior_fields  # noqa: E402
from hvq.bitstream.prior_tables import PriorTables  # noqa: E402

VECTORS = json.loads((HERE / "vectors.json").read_text())
SEEDS = sorted(targets.CORPUS.glob("*.hvq"))
ROOT = HERE.parents[1]
SHIPPED_MODEL = ROOT / "codec" / "models" / "hvq-0.2.safetensors"  # the model the golden files name
SHIPPED_V1 = ROOT / "tests" / "data" / "shipped-v1.hvq"


def words_of(case) -> list[int]:
    return [int(w, 16) for w in case["words"]]


def lefts_of(case) -> list[list[int]]:
    """The quantised table of each symbol: one table for all, or a row per symbol."""
    return case["left"] * len(case["symbols"]) if "freqs" in case else case["left"]


# -- the coder test vectors (FORMAT.md 8.2, 8.4) ----------------------------------------------


@pytest.mark.parametrize("case", VECTORS["coder"], ids=lambda c: c["name"])
def test_vectors_are_constrictions_words(case):
    encoder = constriction.stream.queue.RangeEncoder()
    if "freqs" in case:
        model = constriction.stream.model.Categorical(np.array(case["freqs"], np.float32), perfect=False)
        encoder.encode(np.array(case["symbols"], np.int32), model)
    else:
        family = constriction.stream.model.Categorical(perfect=False)
        encoder.encode(np.array(case["symbols"], np.int32), family, np.array(case["rows"], np.float32))
    assert encoder.get_compressed().tolist() == words_of(case)


@pytest.mark.parametrize("case", VECTORS["coder"], ids=lambda c: c["name"])
def test_the_spec_coder_reproduces_the_vectors(case):
    tables = [case["freqs"]] if "freqs" in case else case["rows"]
    assert [ref.quantised_cdf(t) for t in tables] == case["left"]
    encoder = ref.RangeEncoder()
    for symbol, left in zip(case["symbols"], lefts_of(case)):
        encoder.encode(symbol, left)
    assert encoder.sealed() == words_of(case)
    decoder = ref.RangeDecoder(words_of(case))
    assert [decoder.decode(left) for left in lefts_of(case)] == case["symbols"]
    assert decoder.ends_exactly()


@pytest.mark.parametrize("case", VECTORS["coder"], ids=lambda c: c["name"])
@pytest.mark.parametrize("edit", ["append-zero", "append-word", "drop-last", "flip-last"])
def test_the_end_rule_refuses_every_edit_of_a_vector(case, edit):
    words = words_of(case)
    edited = {
        "append-zero": words + [0],
        "append-word": words + [0x5A5A5A5A],
        "drop-last": words[:-1],
        "flip-last": words[:-1] + [words[-1] ^ 1],
    }[edit]
    decoder = ref.RangeDecoder(edited)
    try:
        symbols = [decoder.decode(left) for left in lefts_of(case)]
    except ref.FormatError:
        return
    assert not decoder.ends_exactly(), symbols
    if "freqs" in case:  # hvq refuses it too
        payload = struct.pack(f">{len(edited)}I", *edited)
        with pytest.raises(HvqFormatError, match="does not end where its indices end|does not decode"):
            coder.decode_indices(payload, np.array(case["freqs"]), (1, len(case["symbols"])), level=4)


@pytest.mark.parametrize("case", [c for c in VECTORS["coder"] if "freqs" in c], ids=lambda c: c["name"])
def test_hvq_decodes_the_vectors(case):
    payload = b"".join(bytes.fromhex(w) for w in case["words"])
    grid = coder.decode_indices(payload, np.array(case["freqs"]), (1, len(case["symbols"])))
    assert grid.ravel().tolist() == case["symbols"]


@pytest.mark.parametrize("case", VECTORS["frequencies"], ids=lambda c: str(len(c["scores"])))
def test_frequency_vectors(case):
    scores = np.array([case["scores"]])
    assert context.frequencies(scores.astype(np.int16))[0].tolist() == case["freqs"]
    assert ref.frequencies(scores, scores.shape[1])[0].tolist() == case["freqs"]


def test_random_sequences_code_alike_in_the_spec_and_constriction():
    """Beyond the vectors: carries and seals of every kind, on a few hundred random streams."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(2, 40))
        freqs = rng.integers(1, max(2, 65536 // k), k)
        symbols = rng.integers(0, k, int(rng.integers(1, 80)))
        left = ref.quantised_cdf(freqs)
        encoder = ref.RangeEncoder()
        for s in symbols:
            encoder.encode(int(s), left)
        payload = coder.encode_indices(symbols[None, :], freqs)
        assert struct.pack(f">{len(encoder.sealed())}I", *encoder.sealed()) == payload


# -- the two readers side by side ---------------------------------------------------------------


@lru_cache(maxsize=1)
def fuzz_model() -> ref.Model:
    return ref.read_model(targets.FUZZ_MODEL.read_bytes())


def hvq_read(data: bytes, prior: PriorTables):
    """hvq's outcome for a file: the parse and every whole level's grid, or the class of refusal."""
    try:
        parsed = parse(data)
    except HvqTruncatedError:
        return "truncated"
    except HvqFormatError:
        return "format"
    h = parsed.header
    head = (h.version, h.width, h.height, h.grid_multiple, h.factors, h.codebook_size,
            h.model_fingerprint, h.prior_kind, h.prior_fingerprint)
    head += (dict(h.depths),)
    levels = [(c.factor, c.depth, (c.grid_height, c.grid_width), c.coder, c.index_crc, c.payload) for c in parsed.chunks]
    grids, cache = {}, {}
    for c in parsed.chunks:
        try:
            grids[c.factor, c.depth] = decode_grid(parsed, c.factor, prior, cache, c.depth).tolist()
        except HvqTruncatedError:
            grids[c.factor, c.depth] = "truncated"
        except HvqFormatError:
            grids[c.factor, c.depth] = "format"
        except HvqModelError:
            grids[c.factor, c.depth] = "model"
    return head, levels, parsed.complete, parsed.missing, parsed.missing_refinements, grids


def ref_read(data: bytes, tables: ref.Tables):
    """The same, from the reference reader."""
    try:
        file = ref.read_file(data)
    except ref.TruncatedError:
        return "truncated"
    except ref.FormatError:
        return "format"
    h = file.header
    head = (h.version, h.width, h.height, h.grid_multiple, h.factors, h.codebook_size,
            h.model_fingerprint, h.prior_kind, h.prior_fingerprint)
    head += (h.depths,)
    levels = [(lv.factor, lv.depth, lv.grid, lv.coder, lv.index_crc, lv.payload) for lv in file.levels]
    grids, cache = {}, {}
    for lv in file.levels:
        try:
            grids[lv.factor, lv.depth] = ref.decode_level(file, lv.factor, tables, cache, lv.depth).tolist()
        except ref.TruncatedError:
            grids[lv.factor, lv.depth] = "truncated"
        except ref.FormatError:
            grids[lv.factor, lv.depth] = "format"
        except ref.ModelError:
            grids[lv.factor, lv.depth] = "model"
    return head, levels, file.complete, file.missing, file.missing_depths, grids


def test_the_corpus_files_start_with_a_mode_byte():
    """tests/fuzz/README.md: byte 0 of a seed is the fuzz targets' mode byte, the .hvq file follows."""
    assert all(seed.read_bytes()[:9] == b"\x00" + ref.SIGNATURE for seed in SEEDS if "cut-inside-head" not in seed.name)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.stem)
def test_both_readers_agree_on_every_seed(seed):
    data = seed.read_bytes()[1:]  # after the mode byte
    ours = ref_read(data, fuzz_model().tables)
    assert ours == hvq_read(data, targets.fuzz_prior())
    if ours not in ("format", "truncated"):
        assert all(isinstance(grid, list) for grid in ours[5].values())  # every whole level of a seed decodes
        if ours[2]:
            ref.check_model(ref.read_file(data), fuzz_model())  # the fingerprints name the fuzz model


def test_the_reference_fingerprints_are_the_model_files():
    model = fuzz_model()
    prior = targets.fuzz_prior()
    assert model.tables.prior_fingerprint == prior.context_fingerprint
    assert model.fingerprint == parse(SEEDS[0].read_bytes()[1:]).header.model_fingerprint


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), mutations(4), st.booleans())
def test_both_readers_agree_on_mutated_files(seed, edits, repair):
    data = mutate(seed.read_bytes()[1:], edits)
    if repair:  # with the CRCs made right, mutations reach the fields and the payloads
        data = targets.repair_crcs(data)
    assert ref_read(data, fuzz_model().tables) == hvq_read(data, targets.fuzz_prior())


@lru_cache(maxsize=1)
def shipped():
    """The shipped model as both readers see it: K = 512, static and context tables."""
    model = ref.read_model(SHIPPED_MODEL.read_bytes())
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(SHIPPED_MODEL, "np") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    prior = PriorTables.from_tensors(
        load_file(SHIPPED_MODEL), config["factors"], config["codebook_size"], bytes.fromhex(meta["prior_fingerprint"])
    )
    return model, prior


def test_the_shipped_version_1_file_reads_alike():
    model, prior = shipped()
    data = SHIPPED_V1.read_bytes()
    ref.check_model(ref.read_file(data), model)  # fingerprint recomputed from the model file
    ours = ref_read(data, model.tables)
    assert ours == hvq_read(data, prior)
    assert [lv[3] for lv in ours[1]] == [1, 1, 1]


@pytest.mark.parametrize("stored", [(16, 8, 4), (16, 4), (8,)])
def test_the_shipped_context_prior_codes_alike(stored):
    """K = 512 and all three coders' context paths, on random grids coded by hvq's writer."""
    from hvq.bitstream.container import Header, write_file

    model, prior = shipped()
    rng = np.random.default_rng(len(stored))
    grids = {f: rng.integers(0, 512, (64 // f, 96 // f)) for f in (16, 8, 4)}
    chunks = encode_levels(grids, stored, prior)
    header = Header(96, 64, 16, 512, model.fingerprint, (), **header_prior_fields(prior, chunks))
    data = write_file(header, chunks)
    ours = ref_read(data, model.tables)
    assert ours == hvq_read(data, prior)
    assert {f: np.array(ours[5][f, 1]).tolist() for f in stored} == {f: grids[f].tolist() for f in stored}


# -- the end rule on whole files (FORMAT.md 8.3) -------------------------------------------------


def _rewrite_payload(data: bytes, factor: int, edit) -> bytes:
    """Replace one LEVL payload by ``edit(payload)``, fixing its lengths and CRC so only the payload is wrong."""
    chunk = parse(data).level(factor)
    start, end = chunk.offset, chunk.offset + chunk.chunk_bytes
    fixed = bytearray(data[start + 8 : start + 24])
    payload = edit(chunk.payload)
    fixed[12:16] = struct.pack(">I", len(payload))
    body = bytes(fixed) + payload
    return data[:start] + struct.pack(">I", len(body)) + b"LEVL" + body + struct.pack(">I", zlib.crc32(b"LEVL" + body)) + data[end:]


EDITS = {
    "append-zero-word": lambda p: p + bytes(4),
    "append-junk-word": lambda p: p + b"hide",
    "drop-last-word": lambda p: p[:-4],
    "flip-last-bit": lambda p: p[:-1] + bytes([p[-1] ^ 1]),
}


@pytest.mark.parametrize("seed", ["smooth45x37-16-8-4", "smooth45x37-version-1", "noise20x12-8-4"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_payload_that_does_not_end_at_its_last_word_is_refused(seed, edit):
    data = (targets.CORPUS / f"{seed}.hvq").read_bytes()[1:]
    factor = parse(data).levels[-1].factor  # the finest level: no other level depends on it
    bad = _rewrite_payload(data, factor, EDITS[edit])
    parsed = parse(bad)  # the container is fine; the payload is not
    with pytest.raises(HvqFormatError, match=rf"^level {factor} payload (does not end where its indices end|does not decode)"):
        decode_grid(parsed, factor, targets.fuzz_prior())
    with pytest.raises(ref.FormatError):
        ref.decode_level(ref.read_file(bad), factor, fuzz_model().tables)
    assert ref_read(bad, fuzz_model().tables) == hvq_read(bad, targets.fuzz_prior())


# -- container cases FORMAT.md names explicitly (3, 6.1) ---------------------------------------------

HEAD_V2 = (targets.CORPUS / "smooth45x37-16.hvq").read_bytes()[1:]
HEAD_V1 = (targets.CORPUS / "smooth45x37-version-1.hvq").read_bytes()[1:]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


CASES = {
    # HEAD with N < 2: no version to read, an error whatever follows
    "head-n-0": (ref.SIGNATURE + _chunk(b"HEAD", b""), "format"),
    "head-n-1": (ref.SIGNATURE + _chunk(b"HEAD", b"\x00"), "format"),
    # a version-1 file cut inside HEAD, before its version: a cut, not a wrong length
    "v1-cut-before-version": (HEAD_V1[:20], "truncated"),
    "v1-cut-inside-version": (HEAD_V1[:21], "truncated"),
    "v2-cut-before-version": (HEAD_V2[:20], "truncated"),
    "head-length-wrong-and-cut": (ref.SIGNATURE + struct.pack(">I", 40) + b"HEAD\x00\x02\x00\x00", "format"),
    # an unknown critical chunk that the file cuts: its CRC cannot be checked, so it is a cut
    "cut-unknown-critical": (HEAD_V2[:76] + struct.pack(">I", 100) + b"XTRA" + b"\x00" * 10, "file"),
    "whole-unknown-critical": (HEAD_V2[:76] + _chunk(b"XTRA", b"") + HEAD_V2[76:], "format"),
    # an incomplete first chunk that is not HEAD: no complete HEAD, a truncation
    "cut-first-levl": (ref.SIGNATURE + struct.pack(">I", 40) + b"LEVL" + b"\x00" * 8, "truncated"),
    "cut-first-ancillary": (ref.SIGNATURE + struct.pack(">I", 40) + b"tEXt", "truncated"),
    "whole-first-ancillary": (ref.SIGNATURE + _chunk(b"tEXt", b"x") + HEAD_V2[8:], "format"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_cases_the_spec_names(name):
    data, expected = CASES[name]
    ours = ref_read(data, fuzz_model().tables)
    assert ours == hvq_read(data, targets.fuzz_prior())
    assert (ours if isinstance(ours, str) else "file") == expected


def test_head_messages_name_the_sizes():
    with pytest.raises(HvqFormatError, match="HEAD chunk has 0 bytes, too few to hold its version"):
        parse(CASES["head-n-0"][0])
    with pytest.raises(HvqFormatError, match="HEAD chunk has 40 bytes, expected 56"):
        parse(CASES["head-length-wrong-and-cut"][0])
    v1 = bytearray(HEAD_V1)
    v1[11] = 56  # a version-1 HEAD claiming the version-2 size
    with pytest.raises(HvqFormatError, match="HEAD chunk has 56 bytes, expected 36"):
        parse(bytes(v1))


# -- format 3: refinement depths (FORMAT.md 3.1, 4, 5, 8.5) ------------------------------------


@lru_cache(maxsize=1)
def depth_model():
    """A model file holding only prior tables (context and depth prior), and hvq's PriorTables of it.

    The reference reader parses it as any model file (section 9), fingerprints
    recomputed; no network is needed to code indices.
    """
    from safetensors.numpy import save

    from conftest import random_context_prior, random_depth_prior
    from hvq.codec.runtime.fingerprints import fingerprint, prior_fingerprint

    k, factors = 16, (16, 8, 4)
    context = random_context_prior(factors, k, seed=5)
    static = {f: m.static for f, m in context.items()}
    tables = PriorTables(static, context, depth=random_depth_prior({8: 2, 4: 3}, static, k, seed=5))
    tensors = {f"prior.table.{f}": static[f] for f in factors}
    config = json.dumps({"codebook_size": k, "factors": list(factors)})
    extra = tables.to_tensors()
    meta = {"format": "hvq-model", "model_file_version": "1", "config": config,
            "fingerprint": fingerprint(tensors, config).hex(), "prior_fingerprint": prior_fingerprint(extra).hex()}
    model = ref.read_model(save({**tensors, **extra}, metadata=meta))
    prior = PriorTables(static, context, prior_fingerprint(extra), tables.depth)
    return model, prior


@lru_cache(maxsize=1)
def depth_files() -> tuple[bytes, ...]:
    """Format-3 files of three image sizes, their strips (format 2 and 3) and cuts at and inside chunks."""
    from hvq.bitstream.container import strip_levels
    from hvq.bitstream.levels import Tokens, as_selection, strip, write_tokens

    model, prior = depth_model()
    files = []
    for n, (width, height) in enumerate(((20, 12), (33, 40), (64, 16))):
        rng = np.random.default_rng(n)
        hp, wp = -(-height // 16) * 16, -(-width // 16) * 16
        grids = {f: rng.integers(0, 16, (hp // f, wp // f)) for f in (16, 8, 4)}
        refinements = {8: rng.integers(0, 16, (1, hp // 8, wp // 8)), 4: rng.integers(0, 16, (2, hp // 4, wp // 4))}
        data = write_tokens(Tokens(grids, width, height, model.fingerprint, 16, 16, refinements), prior)
        files += [data, strip_levels(data, as_selection("16,8:2,4:2")), strip(data, as_selection("16,4:3"), prior),
                  strip_levels(data, as_selection("16,8:1,4:1"))]
        ends = [c.offset + c.chunk_bytes for c in parse(data).chunks]
        files += [data[:end] for end in ends] + [data[: end - 5] for end in ends]
    return tuple(files)


def test_both_readers_agree_on_format_3_files():
    model, prior = depth_model()
    versions = set()
    for data in depth_files():
        ours = ref_read(data, model.tables)
        assert ours == hvq_read(data, prior)
        assert all(isinstance(grid, list) for grid in ours[5].values())  # every whole depth decodes
        versions.add(ours[0][0])
    assert versions == {2, 3}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2), mutations(4), st.booleans())
def test_both_readers_agree_on_mutated_format_3_files(which, edits, repair):
    model, prior = depth_model()
    data = mutate(depth_files()[16 * which], edits)  # a whole format-3 file
    if repair:
        data = targets.repair_crcs(data)
    assert ref_read(data, model.tables) == hvq_read(data, prior)
