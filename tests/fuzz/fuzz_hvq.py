"""Coverage-guided fuzzing of the .hvq reader and decoder with atheris (libFuzzer).

::

    pip install atheris
    mkdir -p /tmp/hvq-fuzz
    python tests/fuzz/fuzz_hvq.py --target container /tmp/hvq-fuzz tests/fuzz/corpus \\
        -runs=1000000 -rss_limit_mb=2048 -timeout=10 -max_len=4096 -print_final_stats=1

``--target container`` (default) runs the torch-free reader and range
decoder; ``--target codec`` decodes through the fuzz model's transforms
too (slower).  New inputs go to the first folder, so the committed seed
corpus is only read.  A crash (any exception but ``HvqError``, a failed
invariant), a time-out or memory above the RSS limit stops the run and
writes the input to ``crash-*``/``timeout-*``/``oom-*``.  README.md here
records the last long run.
"""

from __future__ import annotations

import importlib
import sys

import atheris


def main() -> None:
    args = list(sys.argv)
    name = "container"
    if "--target" in args:
        i = args.index("--target")
        name = args[i + 1]
        del args[i : i + 2]
    # Everything the target runs must be imported here to be instrumented:
    # the codec target loads torch and the pipeline, which the container target never needs.
    with atheris.instrument_imports(include=["hvq", "targets"]):
        import targets

        if name == "codec":
            for module in ("hvq.codec.runtime.pipeline", "hvq.codec.runtime.tiling", "hvq.codec.runtime.imageio"):
                importlib.import_module(module)
    target = {"container": targets.container_target, "codec": targets.codec_target}[name]
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
