"""Format 3: refinement depths in the file, the depth prior (coder 4), strip and info with depths.

Synthetic tokens and random integer tables (``conftest.random_context_prior``,
``random_depth_prior``) stand in for a model: the bitstream needs no network.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import random_context_prior, random_depth_prior
from hvq.bitstream.container import (
    CODER_CONTEXT_PARENT,
    CODER_DEPTH,
    SIGNATURE,
    parse,
    strip_levels,
)
from hvq.bitstream.context import previous_contexts
from hvq.bitstream.errors import HvqError, HvqFormatError, HvqModelError, HvqTruncatedError, HvqUsageError
from hvq.bitstream.info import inspect_file
from hvq.bitstream.levels import Tokens, as_selection, read_tokens, strip, write_tokens
from hvq.bitstream.prior_tables import PriorTables
from hvq.cli.main import main

K = 16
FACTORS = (16, 8, 4)
DEPTHS = {8: 2, 4: 3}
MODEL_FP = bytes(range(16))
DATA = Path(__file__).resolve().parent / "data"


def make_prior(depths=DEPTHS, seed: int = 0) -> PriorTables:
    context = random_context_prior(FACTORS, K, seed)
    static = {f: m.static for f, m in context.items()}
    return PriorTables(static, context, bytes([7]) * 16, random_depth_prior(depths, static, K, seed))


PRIOR = make_prior()


def make_tokens(width=40, height=24, depths=DEPTHS, seed=0) -> Tokens:
    """Grids whose depths are correlated with the depth before (as a residual quantiser's are)."""
    rng = np.random.default_rng(seed)
    hp, wp = -(-height // 16) * 16, -(-width // 16) * 16
    grids = {f: rng.integers(0, K, (hp // f, wp // f)) for f in FACTORS}
    refinements = {}
    for factor, deepest in depths.items():
        stack, previous = [], grids[factor]
        for _ in range(deepest - 1):
            keep = rng.random(previous.shape) < 0.5
            previous = np.where(keep, (previous + 1) % K, rng.integers(0, K, previous.shape))
            stack.append(previous)
        refinements[factor] = np.stack(stack)
    return Tokens(grids, width, height, MODEL_FP, 16, K, refinements)


TOKENS = make_tokens()
DATA3 = write_tokens(TOKENS, PRIOR)


def chunks_of(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk after the signature."""
    out, pos = [], len(SIGNATURE)
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def build(chunks) -> bytes:
    """A file from (type, data) chunks, CRCs computed."""
    parts = [SIGNATURE]
    for kind, body in chunks:
        parts.append(struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(parts)


def levl(body: bytes, **fields) -> bytes:
    """A LEVL body with fixed fields replaced (factor, gh, gw, coder, depth, crc, length)."""
    names = ("factor", "gh", "gw", "coder", "depth", "crc", "length")
    values = dict(zip(names, struct.unpack_from(">HHHBBII", body)))
    values.update(fields)
    return struct.pack(">HHHBBII", *(values[n] for n in names)) + body[16:]


def names(data: bytes) -> list[str]:
    return [c.name for c in parse(data).chunks]


# -- Tokens ---------------------------------------------------------------------------------------


def test_tokens_hold_refinements_read_only_and_compare_them():
    t = TOKENS
    assert t.depths == {16: 1, 8: 2, 4: 3} and t.depth(4) == 3
    assert t.refinements[4].dtype == np.uint16 and t.refinements[4].shape == (2, 8, 12)
    assert not t.refinements[4].flags.writeable
    assert np.array_equal(t.refinement(4, 1), t.grid(4)) and np.array_equal(t.refinement(4, 3), t.refinements[4][1])
    assert t == make_tokens() and t != make_tokens(seed=1)
    assert t != t.select(FACTORS, {4: 2}) and t.select(FACTORS, {4: 2}) == make_tokens(depths={8: 2, 4: 2})
    assert t.select((16, 4), {4: 1}).depths == {16: 1, 4: 1}
    assert "x3 depths" in repr(t)


def test_tokens_refuse_bad_refinements():
    grids = {f: g for f, g in TOKENS.grids.items()}
    with pytest.raises(HvqFormatError, match="refinements of level 2"):
        Tokens(grids, 40, 24, MODEL_FP, 16, K, {2: np.zeros((1, 1, 1))})
    with pytest.raises(HvqFormatError, match=r"level 4 refinements are \(2, 8, 11\)"):
        Tokens(grids, 40, 24, MODEL_FP, 16, K, {4: np.zeros((2, 8, 11))})
    with pytest.raises(HvqFormatError, match=r"level 4 refinements are \(0, 8, 12\)"):
        Tokens(grids, 40, 24, MODEL_FP, 16, K, {4: np.zeros((0, 8, 12))})
    with pytest.raises(HvqFormatError, match=r"outside \[0, 16\)"):
        Tokens(grids, 40, 24, MODEL_FP, 16, K, {4: np.full((1, 8, 12), 16)})
    with pytest.raises(HvqUsageError, match="level 4 has depths 1..3, not 4"):
        TOKENS.select(FACTORS, {4: 4})
    with pytest.raises(HvqFormatError, match="level 4:4 is not in these tokens"):
        TOKENS.refinement(4, 4)


def test_selection_syntax():
    assert as_selection("16,8,4:2") == ((16, None), (8, None), (4, 2))
    assert as_selection(((4, 3), 8, "16")) == ((4, 3), (8, None), (16, None))
    for bad, message in (("4:0", "depth 0"), ("4:x", "not a level with a depth"), ("4:17", "depth 17"), ("", "names no level")):
        with pytest.raises(HvqUsageError, match=message):
            as_selection(bad)


# -- writing and reading ------------------------------------------------------------------------


def test_round_trip_writes_format_3_coarse_first_then_by_depth():
    parsed = parse(DATA3)
    assert parsed.header.version == 3 and parsed.header.depths == ((8, 2), (4, 3))
    assert names(DATA3) == ["level 16", "level 8", "level 8:2", "level 4", "level 4:2", "level 4:3"]
    assert [c.coder for c in parsed.refinements] == [CODER_DEPTH] * 3
    assert parsed.level(4).coder == CODER_CONTEXT_PARENT  # depth 1 is coded as in format 2
    assert read_tokens(parsed, FACTORS, PRIOR) == TOKENS
    assert read_tokens(parsed, (4,), PRIOR, {4: 2}) == TOKENS.select((4,), {4: 2})
    assert write_tokens(TOKENS, PRIOR) == DATA3  # deterministic


def test_tokens_without_refinements_are_written_as_format_2_byte_for_byte():
    plain = TOKENS.select(FACTORS, {8: 1, 4: 1})
    data = write_tokens(plain, PRIOR)
    assert parse(data).header.version == 2
    assert data == write_tokens(plain, make_prior(depths={}))  # the depth tables play no part
    assert write_tokens(plain, PRIOR) == strip(DATA3, ((16, None), (8, 1), (4, 1)))


def test_refinements_need_depth_tables():
    with pytest.raises(HvqModelError, match=r"no depth tables for level 4:3 \(it codes level 4 at depths 1..2\)"):
        write_tokens(TOKENS, make_prior(depths={8: 2, 4: 2}))
    with pytest.raises(HvqModelError, match="no depth tables for level 8:2"):
        write_tokens(TOKENS, make_prior(depths={}))


def test_a_depth_is_coded_given_the_previous_depth_at_the_same_cell():
    previous = np.arange(12).reshape(3, 4)
    p, ph, pv = previous_contexts(previous, outside=99)
    assert np.array_equal(p, previous)
    assert ph[0].tolist() == [99, 2, 1, 99]  # even column: left neighbour; odd: right
    assert pv[:, 0].tolist() == [99, 8, 4]  # even row: above; odd: below


def test_a_file_claiming_more_depths_than_its_model_has_is_refused():
    with pytest.raises(HvqFormatError, match=r"chunk LEVL \(level 4:3\) is deeper than the model's depth prior"):
        read_tokens(parse(DATA3), (4,), make_prior(depths={8: 2, 4: 2}))


# -- truncation and damage ------------------------------------------------------------------------

SMALL = make_tokens(32, 16, depths={4: 3}, seed=3)
SMALL_PRIOR = make_prior(depths={4: 3}, seed=3)
SMALL_DATA = write_tokens(SMALL, SMALL_PRIOR)


def decode_whole(data: bytes) -> dict:
    """Every (factor, depth) grid a possibly cut file holds whole, decoded."""
    parsed = parse(data)
    return {(c.factor, c.depth): read_tokens(parsed, (c.factor,), SMALL_PRIOR, {c.factor: c.depth}).refinement(c.factor, c.depth)
            for c in parsed.chunks}


def test_every_truncation_decodes_every_complete_depth_or_names_the_cut():
    offsets = [c.offset + c.chunk_bytes for c in parse(SMALL_DATA).chunks]
    for n in range(1, len(SMALL_DATA)):
        try:
            grids = decode_whole(SMALL_DATA[:n])
        except HvqTruncatedError:
            assert n < len(SIGNATURE) + 12 + 72  # only a file without a whole HEAD is refused
            continue
        expected = sum(1 for end in offsets if end <= n)
        assert len(grids) == expected, n
        for (f, d), grid in grids.items():
            assert np.array_equal(grid, SMALL.refinement(f, d))
    assert parse(SMALL_DATA[: offsets[-1]]).missing_refinements == ()
    cut = parse(SMALL_DATA[: offsets[-2]])
    assert cut.missing_refinements == ((4, 3),) and cut.depth_of(4) == 2
    with pytest.raises(HvqTruncatedError, match="level 4:3 is missing"):
        read_tokens(cut, (4,), SMALL_PRIOR, {4: 3})
    assert read_tokens(cut, (4,), SMALL_PRIOR).depth(4) == 2  # every complete depth


def test_every_single_bit_flip_is_a_one_line_error_or_the_same_grids():
    original = decode_whole(SMALL_DATA)
    for bit in range(8 * len(SMALL_DATA)):
        damaged = bytearray(SMALL_DATA)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            grids = decode_whole(bytes(damaged))
        except HvqError as exc:
            assert "\n" not in str(exc)
            continue
        for key, grid in grids.items():  # a flip that still decodes must give the very grids
            assert np.array_equal(grid, original[key]), (bit, key)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c[:6] + [c[4]] + c[6:], r"level 4:2\) is out of order"),
        (lambda c: c[:5] + [c[4]] + c[5:], r"level 4:2\) is stored twice"),
        (lambda c: c[:4] + c[5:], r"level 4:3\) does not follow level 4:2"),
        (lambda c: c[:3] + [c[4]] + [c[3]] + c[5:], r"level 4:2\) does not follow level 4, the depth it is coded given"),
        (lambda c: c[:6] + [(b"LEVL", levl(c[5][1], depth=4))] + c[6:], r"level 4:4\) is not declared in HEAD \(level 4 has 3 depths\)"),
        (lambda c: c[:5] + [(b"LEVL", levl(c[5][1], depth=0))] + c[6:], r"level 4:0\) has depth 0, outside 1..16"),
        (lambda c: c[:5] + [(b"LEVL", levl(c[5][1], depth=200))] + c[6:], r"level 4:200\) has depth 200"),
        (lambda c: c[:5] + [(b"LEVL", levl(c[5][1], coder=3))] + c[6:], r"level 4:3\) uses coder 3, but depth 3 needs coder 4"),
        (lambda c: c[:3] + [(b"LEVL", levl(c[3][1], coder=4))] + c[4:], r"level 4\) uses coder 4, but depth 1 needs coder 1, 2 or 3"),
        (lambda c: c[:4] + c[6:], r"HEAD declares levels 16,8,4:3 but the file holds 16,8,4"),
    ],
    ids=["out-of-order", "duplicate", "gap", "before-its-level", "undeclared", "depth-0", "depth-200", "coder-3", "coder-4", "missing"],
)
def test_structural_faults_name_the_level_and_depth(edit, message):
    chunks = chunks_of(SMALL_DATA)  # HEAD, 16, 8, 4, 4:2, 4:3, DONE
    assert [k for k, _ in chunks] == [b"HEAD"] + [b"LEVL"] * 5 + [b"DONE"]
    with pytest.raises(HvqFormatError, match=message):
        parse(build(edit(chunks)))


def test_head_depth_table_faults():
    chunks = chunks_of(SMALL_DATA)
    head = bytearray(chunks[0][1])
    assert len(head) == 72 and head[56:72] == bytes([0, 0, 3, 1, 1] + [0] * 11)  # byte b: level 2**b
    for table, message in (
        (bytes([0, 0, 3, 1, 0] + [0] * 11), "HEAD declares 0 depths for level 16, outside 1..16"),
        (bytes([0, 1, 3, 1, 1] + [0] * 11), "HEAD declares 1 depths for level 2, which it does not store"),
        (bytes([0, 0, 1, 1, 1] + [0] * 11), "a version-3 HEAD declares no refinement depth"),
        (bytes([0, 0, 17, 1, 1] + [0] * 11), "HEAD declares 17 depths for level 4, outside 1..16"),
    ):
        head[56:72] = table
        with pytest.raises(HvqFormatError, match=message):
            parse(build([(b"HEAD", bytes(head))] + chunks[1:]))
    as_v2 = bytearray(chunks[0][1][:56])
    as_v2[0:2] = b"\x00\x02"
    with pytest.raises(HvqFormatError, match=r"LEVL \(level 16\) has a non-zero reserved byte"):
        parse(build([(b"HEAD", bytes(as_v2))] + chunks[1:]))  # a version-2 file must not carry depth bytes


# -- strip ----------------------------------------------------------------------------------------


def test_strip_drops_a_tail_of_depths_verbatim():
    kept = strip_levels(DATA3, as_selection("16,8,4:2"))  # no prior: nothing is re-coded
    assert names(kept) == ["level 16", "level 8", "level 8:2", "level 4", "level 4:2"]
    assert kept == write_tokens(TOKENS.select(FACTORS, {4: 2}), PRIOR)
    assert read_tokens(parse(kept), FACTORS, PRIOR) == TOKENS.select(FACTORS, {4: 2})
    whole = {(c.factor, c.depth): c.payload for c in parse(DATA3).chunks}
    assert all(whole[c.factor, c.depth] == c.payload for c in parse(kept).chunks)
    assert strip_levels(DATA3, as_selection("16,8,4")) == DATA3  # F keeps every depth of F


def test_strip_dropping_a_parent_level_recodes_its_child_and_keeps_the_depths():
    kept = strip(DATA3, as_selection("16,4:3"), PRIOR)
    assert names(kept) == ["level 16", "level 4", "level 4:2", "level 4:3"]
    assert kept == write_tokens(TOKENS.select((16, 4)), PRIOR)


@pytest.mark.parametrize(
    "keep, message",
    [("16,4:4", "cannot keep level 4:4: level 4 stores depths 1..3"), ("16:2", "cannot keep level 16:2"),
     ("4:2,4:3", "level 4 is named twice with different depths")],
)
def test_strip_refuses_depths_the_file_does_not_store(keep, message):
    with pytest.raises(HvqUsageError, match=message):
        strip_levels(DATA3, as_selection(keep))


# -- info and the command line ---------------------------------------------------------------------


def test_info_lists_depths_per_level():
    info = inspect_file(DATA3)
    assert [(lv.factor, [d.depth for d in lv.depths]) for lv in info.levels] == [(16, []), (8, [2]), (4, [2, 3])]
    parsed = parse(DATA3)
    for lv in info.levels:
        for d in lv.depths:
            chunk = parsed.chunk(lv.factor, d.depth)
            assert d.bits_per_index == round(8 * len(chunk.payload) / (lv.grid_height * lv.grid_width), 4)
            assert d.coder == "depth+previous"
    cut = inspect_file(DATA3[: parse(DATA3).chunk(4, 3).offset])
    assert not cut.complete and cut.missing == () and cut.missing_depths == ("4:3",)
    json.dumps(info.to_dict())


def test_cli_strip_and_info_with_depths(tmp_path):
    source = tmp_path / "d.hvq"
    source.write_bytes(DATA3)
    run = CliRunner().invoke
    result = run(main, ["strip", str(source), "--keep", "16,8,4:2", "-o", str(tmp_path / "s.hvq")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.hvq").read_bytes() == strip_levels(DATA3, as_selection("16,8,4:2"))
    text = run(main, ["info", str(source)]).output
    assert "  4:2  12x8" in text and "  4:3  12x8" in text and "depth+previous" in text and ".hvq v3" in text
    listed = json.loads(run(main, ["info", "--json", str(tmp_path / "s.hvq")]).output)
    assert [[d["depth"] for d in lv["depths"]] for lv in listed["levels"]] == [[], [2], [2]]
    cut = tmp_path / "cut.hvq"
    cut.write_bytes(DATA3[:-40])
    assert "TRUNCATED (missing levels 4:3)" in run(main, ["info", str(cut)]).output
    for keep, message in (("16,4:0", "depth 0"), ("4:x", "not a level with a depth"), ("16,4:9", "cannot keep level 4:9")):
        result = run(main, ["strip", str(source), "--keep", keep, "-o", str(tmp_path / "bad.hvq")])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "bad.hvq").exists()


# -- old files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shipped-v1.hvq", "shipped-v2.hvq", "scene-128x96-q40.hvq"])
def test_format_1_and_2_files_read_as_before(name):
    from hvq.codec.runtime.registry import read_prior

    data = (DATA / name).read_bytes()
    parsed = parse(data)
    assert parsed.header.version in (1, 2) and parsed.refinements == () and parsed.header.depths == ()
    prior = read_prior(Path(__file__).resolve().parents[1] / "codec" / "models" / "hvq-0.2.safetensors").prior  # the model they name
    tokens = read_tokens(parsed, parsed.header.factors, prior)
    assert tokens.refinements == {} and set(tokens.depths.values()) == {1}
    if parsed.header.version == 2 and not parsed.ancillary:
        assert write_tokens(tokens, prior) == data  # format 2, byte for byte


# -- the worked example of FORMAT.md section 15.1 -------------------------------------------------


def test_the_worked_example_of_format_md():
    """Section 15.1's 208 bytes: zero context and depth tables, so every index costs 4 bits and shows through."""
    from hvq.bitstream.context import LevelContextModel
    from hvq.bitstream.prior_tables import depth_model
    from hvq.codec.runtime.fingerprints import prior_fingerprint

    ones, zeros = np.ones(K, np.int32), (lambda rows: np.zeros((rows, K), np.int8))
    context = {
        16: LevelContextModel(ones, np.zeros(K, np.int16), zeros(K + 1), zeros(K + 1)),
        8: LevelContextModel(ones, np.zeros(K, np.int16), zeros(K + 1), zeros(K + 1), zeros(K), zeros(K + 1), zeros(K + 1)),
    }
    depth = {(8, 2): depth_model(ones, parent=zeros(K), parent_horizontal=zeros(K + 1), parent_vertical=zeros(K + 1),
                                 horizontal=zeros(K + 1), vertical=zeros(K + 1))}
    fp = prior_fingerprint(PriorTables({16: ones, 8: ones}, context, depth=depth).to_tensors())
    prior = PriorTables({16: ones, 8: ones}, context, fp, depth)
    tokens = Tokens({16: [[8, 8]], 8: [[14, 14, 14, 14], [3, 3, 3, 3]]}, 20, 12,
                    bytes.fromhex("771ecfbe803d1e110191f0f0ba147046"), 16, K, {8: [[[1, 2, 3, 4], [5, 6, 7, 8]]]})
    data = write_tokens(tokens, prior)
    spec = (Path(__file__).resolve().parents[1] / "bitstream" / "FORMAT.md").read_text()
    section = spec[spec.index("### 15.1"):spec.index("## 16.")]
    dump = next(block for block in section.split("```\n") if block.startswith("00000000"))
    assert bytes.fromhex("".join(line[10:57] for line in dump.splitlines())) == data
    assert len(data) == 208 and read_tokens(parse(data), (16, 8), prior) == tokens
    cut = parse(data[:160])
    assert cut.missing_refinements == ((8, 2),) and read_tokens(cut, (8,), prior).depth(8) == 1
    assert parse(strip_levels(data, as_selection("16,8:1"))).header.version == 2


# -- the runtime: a tiny random model with depths 4:3 ---------------------------------------------


@pytest.fixture(scope="module")
def depth_model_path(tmp_path_factory):
    from conftest import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("depths") / "tiny-depths.safetensors", context=True, depths=((4, 3),))


@pytest.fixture(scope="module")
def depth_codec(depth_model_path):
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(depth_model_path)


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(4)
    smooth = np.cumsum(rng.normal(0, 6, (40, 56, 3)), axis=1) + 128
    return Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8))


def test_tokenize_fills_refinements_and_detokenize_decodes_each_depth(depth_codec, picture):
    tokens = depth_codec.tokenize(picture)
    assert tokens.depths == {16: 1, 8: 1, 4: 3}
    assert np.array_equal(tokens.grid(4), depth_codec.tokenize(picture, "4:1").grid(4))  # depth 1: encode()'s grid
    assert depth_codec.tokenize(picture, "16,4:2").depths == {16: 1, 4: 2}
    images = [np.asarray(depth_codec.detokenize(tokens, 4, d)).astype(int) for d in (1, 2, 3)]
    assert np.array_equal(images[2], np.asarray(depth_codec.detokenize(tokens)))  # default: the deepest held
    assert np.array_equal(images[0], np.asarray(depth_codec.detokenize(tokens.select((4,), {4: 1}))))
    with pytest.raises(HvqFormatError, match="level 4:4 is not in these tokens"):
        depth_codec.detokenize(tokens, 4, 4)
    with pytest.raises(HvqModelError, match=r"model has no level 4:4 \(level 4 has depths 1..3\)"):
        depth_codec.tokenize(picture, "16,4:4")


def test_refinements_need_a_model_with_depth_tables(tmp_path, picture):
    from conftest import make_tiny_model
    from hvq.codec.runtime.pipeline import Codec

    codec = Codec.for_model(make_tiny_model(tmp_path / "static.safetensors", depths=((4, 3),)))
    with pytest.raises(HvqModelError, match="no depth tables for level 4:2"):
        codec.compress(picture)
    assert parse(codec.compress(picture, "16,8,4:1")).header.version == 2


def test_the_depth_prior_is_stored_under_the_prior_fingerprint(depth_model_path, tmp_path):
    from conftest import make_tiny_model
    from hvq.codec.runtime.weights import load_model

    model = load_model(depth_model_path)
    assert sorted(model.prior.depth) == [(4, 2), (4, 3)] and model.prior.depth_of(4) == 3
    plain = load_model(make_tiny_model(tmp_path / "plain.safetensors", context=True, depths=((4, 3),)))
    assert plain.fingerprint == model.fingerprint  # the same weights: the depth tables are the prior's
    without = load_model(make_tiny_model(tmp_path / "nodepth.safetensors", context=True))
    assert not without.prior.depth and without.prior.context_fingerprint != model.prior.context_fingerprint


def test_cli_end_to_end_with_depths(depth_model_path, depth_codec, picture, tmp_path):
    run = CliRunner().invoke
    src = tmp_path / "pic.png"
    picture.save(src)
    full, kept = tmp_path / "pic.hvq", tmp_path / "kept.hvq"
    assert run(main, ["compress", str(src), "-o", str(full), "--model", str(depth_model_path)]).exit_code == 0
    text = run(main, ["info", str(full)]).output
    assert ".hvq v3" in text and "    4:2  " in text and "    4:3  " in text
    listed = json.loads(run(main, ["info", "--json", str(full)]).output)
    assert [d["depth"] for d in listed["levels"][-1]["depths"]] == [2, 3]
    result = run(main, ["strip", str(full), "--keep", "16,8,4:2", "-o", str(kept)])
    assert result.exit_code == 0, result.output
    direct = tmp_path / "direct.hvq"
    assert run(main, ["compress", str(src), "-o", str(direct), "--levels", "16,8,4:2",
                      "--model", str(depth_model_path)]).exit_code == 0
    assert direct.read_bytes() == kept.read_bytes()  # strip == compressing with those depths
    pixels = {}
    for depth in (1, 2, 3):
        out = tmp_path / f"d{depth}.png"
        result = run(main, ["decompress", str(full), "--level", "4", "--depth", str(depth), "-o", str(out),
                            "--model", str(depth_model_path)])
        assert result.exit_code == 0, result.output
        pixels[depth] = np.asarray(Image.open(out))
    stripped = tmp_path / "kept.png"
    assert run(main, ["decompress", str(kept), "-o", str(stripped), "--model", str(depth_model_path)]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(stripped)), pixels[2])
    import hvq

    assert np.array_equal(np.asarray(hvq.decompress(full, 4, model=depth_model_path, depth=2)), pixels[2])
    default = tmp_path / "default.png"
    assert run(main, ["decompress", str(full), "-o", str(default), "--model", str(depth_model_path)]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(default)), pixels[3])
    cut = tmp_path / "cut.hvq"
    cut.write_bytes(full.read_bytes()[: parse(full.read_bytes()).chunk(4, 3).offset + 20])
    preview = tmp_path / "preview.png"
    result = run(main, ["decompress", str(cut), "--partial", "-o", str(preview), "--model", str(depth_model_path)])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(preview)), pixels[2])  # every complete depth
    result = run(main, ["decompress", str(kept), "--depth", "3", "-o", str(tmp_path / "x.png"), "--model", str(depth_model_path)])
    assert result.exit_code == 1 and "level 4:3 is not stored" in result.output
    result = run(main, ["compress", str(src), "-o", str(tmp_path / "y.hvq"), "--levels", "4:7", "--model", str(depth_model_path)])
    assert result.exit_code == 2 and "level 4 has depths 1..3" in result.output


def test_token_shards_carry_refinements(depth_model_path, depth_codec, picture, tmp_path):
    from hvq.codec.runtime.shards import TokenDataset

    src = tmp_path / "in"
    src.mkdir()
    picture.save(src / "a.png")
    (src / "b.hvq").write_bytes(depth_codec.compress(picture, "16,8,4:2"))
    result = CliRunner().invoke(main, ["tokens", str(src), "-o", str(tmp_path / "tok"), "--model", str(depth_model_path)])
    assert result.exit_code == 0, result.output
    found = dict(TokenDataset.open(tmp_path / "tok"))
    assert found["a.png"] == depth_codec.tokenize(picture)
    assert found["b.hvq"] == depth_codec.tokenize(picture, "16,8,4:2")
    manifest = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert manifest["images"][0]["levels"]["4"]["depths"] in (2, 3) and "depths" not in manifest["images"][0]["levels"]["8"]
    result = CliRunner().invoke(main, ["detokenize", str(tmp_path / "tok"), "-o", str(tmp_path / "img"), "--level", "4",
                                       "--depth", "2", "--model", str(depth_model_path)])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "img" / "a.png")),
                          np.asarray(depth_codec.detokenize(found["a.png"], 4, 2)))


def test_the_fitted_depth_prior_learns_what_the_previous_depth_says():
    """Depth 2 is mostly a function of depth 1 here: the fitted coder-4 tables must code it far below log2(K) bits."""
    from hvq.bitstream.coder import encode_indices_in_context
    from hvq.codec.fit.context_prior import ContextFitConfig, fit_depth_prior

    rng = np.random.default_rng(9)
    stacks = []
    for _ in range(6):
        first = rng.integers(0, K, (16, 16))
        second = np.where(rng.random(first.shape) < 0.9, (3 * first + 1) % K, rng.integers(0, K, first.shape))
        stacks.append({4: np.stack([first, second])})
    static = {4: np.ones(K, np.int32)}
    models = fit_depth_prior(stacks, static, {4: 2}, ContextFitConfig(steps=120, batch_tokens=2048, lr=0.1))
    assert list(models) == [(4, 2)] and models[(4, 2)].has_parent
    held = rng.integers(0, K, (16, 16))
    follows = np.where(rng.random(held.shape) < 0.9, (3 * held + 1) % K, rng.integers(0, K, held.shape))
    bits = 8 * len(encode_indices_in_context(follows, models[(4, 2)], held, previous=True)) / held.size
    assert bits < 2.0  # uniform would be 4 bits; the previous depth predicts 90% of the cells
