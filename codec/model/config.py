"""Model configuration: every size the network is built from, saved with its weights.

A checkpoint rebuilds itself from this dataclass (stored as JSON in the
safetensors metadata); nothing is inferred from weight shapes.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

from hvq.bitstream.container import MAX_CODEBOOK_SIZE
from hvq.bitstream.errors import HvqConfigError

# The names of hvq.codec.model.layers.DOWNSAMPLERS, here so that the config needs no torch.
DOWNSAMPLE_KINDS = ("subsample", "avgpool", "conv", "residual")
# How latents meet the codebook (hvq.codec.model.quantizers): nearest codeword by
# squared distance (the product's), or by angle after l2-normalising both.
LOOKUP_KINDS = ("euclidean", "cosine")
# How the codebook's EMA weighs the levels: every vector alike (the product's), or each level alike.
BALANCE_KINDS = ("pooled", "level")
# How refinement depths quantise a level's residual (hvq.codec.model.residual): nearest codeword at
# every depth (RQ-VAE), or, in training only, an index drawn at every depth (RSQ-VAE, seed 001).
RESIDUAL_KINDS = ("rq", "rsq")
MAX_DEPTH = 16  # refinement depths per level, depth 1 included
# Fields added after hvq 0.1; their defaults are what every earlier model was, so
# to_json leaves them out at their defaults and earlier fingerprints still hold.
ADDED_AFTER_0_1 = (
    "downsample",
    "shared_codebook",
    "level_heads",
    "lookup",
    "codebook_balance",
    "stochastic_quantisation",
    "decoder_blocks",
    "shared_tail",
    "topdown",
    "depths",
    "residual_quantiser",
)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the hierarchical VQ-VAE.

    ``factors`` are the levels, named by their downsampling factor (image side
    divided by grid side), fine to coarse: powers of two from 4 up.  The
    encoder trunk halves the image twice (factor 4); a chain of DownSample
    blocks halves it again down to the coarsest factor, and each level in
    ``factors`` is quantised and decoded from its grid in that chain.  The
    product codes every grid, (4, 8, 16); a single-level model such as (16,)
    still runs the chain through 1/8 but codes only 1/16, so that it differs
    from the hierarchy in what is coded and nothing else (the single-level
    baselines of ``benchmarks/ablation.py``).

    ``downsample`` names how the chain halves a grid (``hvq.codec.model.layers.DOWNSAMPLERS``):
    "residual" (stride-2 conv + 2x2 average pool, summed; the product's),
    "conv", "avgpool" or "subsample".  ``shared_codebook`` False gives each
    level its own codebook instead of the one shared by all levels.  Both
    exist for the ablation; ``to_json`` leaves them out while they hold their
    defaults, so the config of every model made before them, and its
    fingerprint, is unchanged.

    The options of the design study for model v2 (``benchmarks/design.py``,
    issue 12), one behaviour each and likewise left out of the JSON at their
    defaults:

    - ``level_heads`` False: no head per level; one head at 1/4 maps the
      trunk into the code space and the DownSample chain pools the code-space
      latent itself (seed 002's sharing: every level is an average of the same
      vectors, so all levels fall in one region of the codebook);
    - ``lookup`` "cosine": latents and codewords are l2-normalised before the
      nearest-codeword search (pooling shrinks coarse vectors' norms; on the
      sphere it cannot);
    - ``codebook_balance`` "level": each level weighs the same in the EMA
      (level 4 has 16x the vectors of level 16), and dead codewords restart
      on vectors of the level that uses the fewest codewords;
    - ``stochastic_quantisation``: training draws each index from a softmax
      over negative distances (SQ-VAE, seed 001); inference stays nearest-codeword;
    - ``decoder_blocks``: residual blocks at each level's own grid (1 today);
    - ``shared_tail``: the decoders share everything from 1/4 to full
      resolution; each level keeps its own part down to 1/4;
    - ``topdown``: a finer level's decoder also reads the coarser levels'
      codewords, which the file stores before it (VQ-VAE-2's injected
      top-down decoding); such a model decodes level f only from a file that
      holds every coarser level.

    Refinement depths (issue 14, ``hvq.codec.model.residual``), likewise left
    out of the JSON at their defaults:

    - ``depths``: (factor, D) pairs, D in [2, 16], for the levels that take
      D - 1 refinements of their depth-1 codes (absent: depth 1 only).  Each
      depth quantises what is left of the level's latent with the same shared
      codebook; one decoder per level serves every depth;
    - ``residual_quantiser`` "rsq": training draws every depth's index
      (RSQ-VAE, seed 001); "rq" takes the nearest codeword.  Inference is
      nearest-codeword either way.
    """

    codebook_size: int = 512
    code_dim: int = 64
    factors: tuple[int, ...] = (4, 8, 16)  # image side / grid side, fine to coarse
    encoder_channels: tuple[int, int] = (48, 96)  # at 1/2 and at 1/4 (and coarser)
    # Decoder width per resolution, keyed by downsampling factor.  Tapered:
    # full-resolution convolutions dominate CPU cost, so they are narrowest.
    decoder_channels: tuple[tuple[int, int], ...] = ((16, 96), (8, 96), (4, 96), (2, 48), (1, 24))
    commitment_beta: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0  # EMA uses per step below which a code is restarted
    downsample: str = "residual"  # how the encoder halves a grid: a key of DOWNSAMPLERS
    shared_codebook: bool = True  # False: one codebook per level (ablation only)
    level_heads: bool = True  # False: one head at 1/4, the chain pools the code-space latent
    lookup: str = "euclidean"  # a key of LOOKUP_KINDS
    codebook_balance: str = "pooled"  # a key of BALANCE_KINDS
    stochastic_quantisation: bool = False  # training only: sample indices (SQ-VAE)
    decoder_blocks: int = 1  # residual blocks at each level's own grid
    shared_tail: bool = False  # one decoder tail from 1/4 to the image, for every level
    topdown: bool = False  # finer decoders also read the coarser levels' codewords
    depths: tuple[tuple[int, int], ...] = ()  # (factor, D >= 2) of the levels with refinement depths
    residual_quantiser: str = "rq"  # a key of RESIDUAL_KINDS

    def __post_init__(self) -> None:
        """Refuse sizes no network can be built from (``HvqConfigError``).

        The sizes come from users (``hvq train`` options, a --model-config
        file) and from model files, so a bad one is an input error, not a bug.
        """
        factors = tuple(int(f) for f in self.factors)
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "encoder_channels", tuple(int(c) for c in self.encoder_channels))
        object.__setattr__(
            self, "decoder_channels", tuple((int(f), int(c)) for f, c in self.decoder_channels)
        )
        if not factors or any(f < 4 or f & (f - 1) for f in factors):
            raise HvqConfigError("factors must be powers of two from 4 up (the encoder trunk's stride is 4)")
        if any(coarse <= fine for fine, coarse in zip(factors, factors[1:])):
            raise HvqConfigError("factors must run fine to coarse without repeats: 4, 8, 16, ...")
        if self.downsample not in DOWNSAMPLE_KINDS:
            raise HvqConfigError(f"downsample must be one of {', '.join(DOWNSAMPLE_KINDS)}")
        if self.lookup not in LOOKUP_KINDS:
            raise HvqConfigError(f"lookup must be one of {', '.join(LOOKUP_KINDS)}")
        if self.codebook_balance not in BALANCE_KINDS:
            raise HvqConfigError(f"codebook_balance must be one of {', '.join(BALANCE_KINDS)}")
        self._check_depths()
        if self.decoder_blocks < 1:
            raise HvqConfigError("decoder_blocks must be >= 1")
        if not 2 <= self.codebook_size <= MAX_CODEBOOK_SIZE:
            raise HvqConfigError(f"codebook_size must be in [2, {MAX_CODEBOOK_SIZE}]")
        widths = dict(self.decoder_channels)
        needed = [1 << k for k in range(self.max_factor.bit_length())]
        missing = [f for f in needed if f not in widths]
        if missing:
            raise HvqConfigError(f"decoder_channels lacks widths for factors {missing}")

    def _check_depths(self) -> None:
        """Normalise ``depths`` to sorted (factor, D) int pairs and refuse what no level can take."""
        try:
            depths = tuple(sorted((int(f), int(d)) for f, d in self.depths))
        except (TypeError, ValueError):
            raise HvqConfigError("depths must be (factor, depth) pairs, e.g. [[4, 4]]") from None
        object.__setattr__(self, "depths", depths)
        if self.residual_quantiser not in RESIDUAL_KINDS:
            raise HvqConfigError(f"residual_quantiser must be one of {', '.join(RESIDUAL_KINDS)}")
        seen = [f for f, _ in depths]
        if len(set(seen)) != len(seen):
            raise HvqConfigError("depths names a level twice")
        for factor, depth in depths:
            if factor not in self.factors:
                raise HvqConfigError(f"depths names level {factor}, which is not one of the factors")
            if not 2 <= depth <= MAX_DEPTH:
                raise HvqConfigError(f"depths of level {factor} must be in [2, {MAX_DEPTH}] (got {depth})")

    def decoder_parents(self, factor: int) -> tuple[int, ...]:
        """The coarser levels whose codes level ``factor``'s decoder reads, fine to coarse (none unless ``topdown``)."""
        return tuple(f for f in self.factors if f > factor) if self.topdown else ()

    def depth_of(self, factor: int) -> int:
        """How many depths level ``factor`` quantises: 1 + its refinements (1 for a level without)."""
        return dict(self.depths).get(factor, 1)

    @property
    def chain_factors(self) -> tuple[int, ...]:
        """Every grid the encoder computes, 4 up to the coarsest level, whether coded or not."""
        return tuple(1 << k for k in range(2, self.max_factor.bit_length()))

    @property
    def max_factor(self) -> int:
        """Coarsest downsampling factor: image sides are padded to a multiple of it."""
        return self.factors[-1]

    def decoder_width(self, factor: int) -> int:
        return dict(self.decoder_channels)[factor]

    def to_json(self) -> str:
        """Sorted-key JSON; the fields added after hvq 0.1 appear only when they differ from their defaults.

        This string is hashed into a model's fingerprint, so the default config
        must keep serialising byte for byte as it did before those fields existed.
        """
        raw = asdict(self)
        for field in fields(self):
            if field.name in ADDED_AFTER_0_1 and raw[field.name] == field.default:
                del raw[field.name]
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        """The config a JSON object describes; any fault in it is one ``HvqConfigError``."""
        with config_faults("model config"):
            return cls.from_dict(parse_json_object(text))

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        """The config of a parsed JSON object (its keys checked; its values by ``__post_init__``)."""
        if not isinstance(raw, dict):
            raise HvqConfigError("a model config is a JSON object")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise HvqConfigError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**raw)


def parse_json_object(text: str) -> dict:
    """A JSON object, or ``HvqConfigError`` (bad JSON, or JSON that is not an object)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise HvqConfigError(f"bad JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise HvqConfigError("a JSON object is needed")
    return raw


@contextmanager
def config_faults(kind: str):
    """Any fault of a config read from a file, as one ``HvqConfigError``: "not a valid model config (...)".

    ``TypeError`` and ``ValueError`` are caught too: a list where a number
    goes fails inside ``__post_init__`` as Python fails, and it is still the
    file's fault.
    """
    try:
        yield
    except (TypeError, ValueError) as exc:  # HvqConfigError included
        raise HvqConfigError(f"not a valid {kind} ({exc})") from None
