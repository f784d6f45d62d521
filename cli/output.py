"""Safe output files: never partial, never over an input, never over a file without --force."""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import click


def check_target(output: Path, inputs: list[Path], force: bool) -> None:
    """Refuse, before any work, to write over an input, over an existing file unless forced, or where no file can go."""
    resolved = output.resolve()
    if any(resolved == p.resolve() for p in inputs):
        raise click.ClickException(f"{output}: refusing to overwrite an input file")
    if output.is_dir():
        raise click.ClickException(f"{output}: is a folder")
    if output.exists() and not force:
        raise click.ClickException(f"{output}: exists (use --force to overwrite)")
    check_writable(output)


def check_writable(output: Path) -> None:
    """Refuse a target whose folder cannot take a new file: found in a moment, not after minutes of work.

    Folders that do not exist yet are fine (``write_atomic`` makes them) as
    long as the nearest one that does exist is a folder that takes files.
    """
    folder = output.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise click.ClickException(f"{output}: cannot write there ({folder} is a file)")
    try:
        with tempfile.TemporaryFile(dir=folder):  # the real test: permissions, read-only mounts, /proc
            pass
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write there ({exc.strerror or exc})")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def signals_held():
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them.

    A temporary file exists from the moment ``mkstemp`` creates it until the
    rename, and a ``try`` cannot cover the instant between ``mkstemp``
    returning and the ``try`` starting: an interrupt there left a ``.part``
    file behind.  Held signals close every such gap; writing bytes already
    in memory takes milliseconds, so the delay is not felt.  Blocks nest:
    a signal re-raised by an inner block is held by the outer one.
    """
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)

    watched = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = [signal.signal(s, hold) for s in watched]
    except ValueError:  # not the main thread (CliRunner in a worker thread): signals don't reach it anyway
        yield
        return
    try:
        yield
    finally:
        for s, handler in zip(watched, previous):
            signal.signal(s, handler)
        for signum in dict.fromkeys(held):  # each kind once, in order of arrival
            signal.raise_signal(signum)


def write_atomic(output: Path, data: bytes) -> None:
    """Write to a temporary file beside the target, then rename: a failure leaves nothing behind.

    Ctrl-C or SIGTERM during the write is held until the file is in place
    (``signals_held``), so an interrupted run has whole outputs only.
    """
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with signals_held():
            fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
                os.replace(tmp, output)
            except BaseException:  # a full disk, a permission error: no partial output survives
                Path(tmp).unlink(missing_ok=True)
                raise
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write ({exc.strerror or exc})") from None


@contextmanager
def terminate_as_interrupt():
    """Treat SIGTERM (kill, a closing terminal's shell) as Ctrl-C while outputs are written.

    Python stops at once on SIGTERM, which would leave a temporary file
    behind; as a KeyboardInterrupt it unwinds through ``write_atomic``'s
    clean-up like Ctrl-C does.
    """
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. CliRunner in a worker thread): leave it alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
