"""``hvq tokens`` and ``hvq detokenize``: a folder of images to token shards, and back.

``hvq tokens`` writes what the encoder computes on every compress (one
uint16 grid per level) for many images at once, in the layout of
``hvq.codec.runtime.shards``; ``.hvq`` inputs give their stored tokens
without re-encoding (only the entropy decoder runs).  Failures are reported
per file and the rest go on, as in ``hvq compress``.
"""

from __future__ import annotations

from pathlib import Path

import click

from hvq.bitstream.errors import HvqError
from hvq.cli.inputs import images_in
from hvq.cli.options import EXIT_CODES, LevelDepthList, LevelFactor, force_option, model_option, output_option
from hvq.cli.output import check_target, terminate_as_interrupt, write_atomic


def _sources(inputs: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(file, name in the manifest) for every input: folders give their images and .hvq files, relative names."""
    found = []
    for given in inputs:
        if given.is_dir():
            files = sorted(set(images_in(given)) | {p for p in given.rglob("*.hvq") if p.is_file()})
            if not files:
                raise click.BadParameter(f"{given}: no image or .hvq files in this folder", param_hint="INPUTS")
            found += [(p, p.relative_to(given).as_posix()) for p in files]
        else:
            found.append((given, given.name))
    names = [name for _, name in found]
    if len(set(names)) != len(names):
        raise click.BadParameter("two inputs have the same name in the manifest; give their common folder instead")
    return found


@click.command(epilog=EXIT_CODES)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@output_option("Output folder: manifest.json and tokens-NNNNN.safetensors shards.", folder=True, required=True)
@click.option("--levels", type=LevelDepthList(), default=None,
              help="Levels to keep, e.g. 16,8 (default: all, at every depth); F:D keeps depths 1..D (16,8,4:2).")
@click.option("--shard-size", type=click.IntRange(min=1), default=1024, show_default=True, help="Images per shard.")
@model_option
@force_option
@click.pass_context
def tokens(ctx, inputs, output, levels, shard_size, model_path, force):
    """Write the codebook indices (tokens) of images and .hvq files to shards with a manifest.

    INPUTS are image files, .hvq files or folders of them.  An image is
    encoded with the model (default: the default model); a .hvq file gives
    the tokens it stores, decoded with the model it names, never re-encoded.
    """
    from hvq.cli.main import _progress, _report
    from hvq.codec.runtime.shards import MANIFEST, ShardWriter
    from hvq.codec.runtime.tokens import decode_tokens

    sources = _sources(inputs)
    check_target(output / MANIFEST, [p for p, _ in sources], force)
    codec = None
    writer = ShardWriter(lambda name, data: write_atomic(output / name, data), shard_size)
    failures = 0
    with terminate_as_interrupt():
        for path, name in _progress(sources, "tokens"):
            try:
                if path.suffix.lower() == ".hvq":
                    found = decode_tokens(path, levels, model_path)
                else:
                    if codec is None:  # torch and the network load only when an image needs them
                        from hvq.codec.runtime.pipeline import Codec

                        codec = Codec.for_model(model_path)
                    found = codec.tokenize(path, levels)
                writer.add(name, found)
            except HvqError as exc:
                failures += 1
                _report(f"Error: {path}: {exc}")
        writer.flush()
        if writer.entries:
            write_atomic(output / MANIFEST, writer.manifest())
    if failures:
        if len(sources) > 1:
            _report(f"{failures} of {len(sources)} files failed")
        ctx.exit(1)


@click.command(epilog=EXIT_CODES)
@click.argument("tokens_dir", metavar="TOKENS", type=click.Path(exists=True, path_type=Path))
@output_option("Folder for the images (PNG, named as in the manifest).", folder=True, dest="output_dir", required=True)
@click.option("--level", type=LevelFactor(), required=True, help="Level to decode, e.g. 16.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Refinement depths of the level to decode (default: every depth the tokens hold).")
@model_option
@force_option
@click.pass_context
def detokenize(ctx, tokens_dir, output_dir, level, depth, model_path, force):
    """Decode the tokens that ``hvq tokens`` wrote back to images, one level each.

    TOKENS is the folder (or its manifest.json).  Images are decoded with
    the model the manifest names (installed), or --model.
    """
    import io

    from hvq.cli.main import _progress, _report
    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.runtime.shards import TokenDataset

    try:
        dataset = TokenDataset.open(tokens_dir)
        codec = Codec.for_fingerprint(dataset.model_fingerprint, model=model_path)
    except HvqError as exc:
        raise click.ClickException(f"{tokens_dir}: {exc}")
    held = dataset.manifest.get("levels") or []
    if level not in held:
        raise click.ClickException(
            f"{tokens_dir}: level {level} is not in these tokens (levels: {','.join(map(str, held))})"
        )
    names = dataset.names
    failures = 0
    with terminate_as_interrupt():
        try:
            pairs = list(dataset)
        except HvqError as exc:
            raise click.ClickException(f"{tokens_dir}: {exc}")
        for name, found in _progress(pairs, "detokenize"):
            target = output_dir / Path(name).with_suffix(".png")
            try:
                if ".." in Path(name).parts or Path(name).is_absolute():
                    raise click.ClickException(f"{name}: names a place outside the output folder")
                check_target(target, [], force)
                buffer = io.BytesIO()
                codec.detokenize(found, level, depth).save(buffer, format="PNG")
                write_atomic(target, buffer.getvalue())
            except click.ClickException as exc:
                failures += 1
                _report(f"Error: {exc.message}")
            except HvqError as exc:
                failures += 1
                _report(f"Error: {name}: {exc}")
    if failures:
        if len(names) > 1:
            _report(f"{failures} of {len(names)} images failed")
        ctx.exit(1)
