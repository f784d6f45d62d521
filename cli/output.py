"""Safe output files: never partial, never over an input, never over a file without --force.

Outputs are regular files: an existing device, FIFO, socket or symbolic
link at the target is refused even with ``--force`` (``os.replace`` would
put a file in its place: as root, ``-o /dev/null --force`` would replace
``/dev/null``).  ``-`` is standard output, for the commands that say so,
and never a terminal.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import click

from hvq.cli.inputs import STDIO

_NOT_REGULAR = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_special(output: Path) -> bool:
    """Refuse a target that exists and is not a regular file (lstat: a link, even a dangling one, is itself).

    Returns whether a regular file is there.
    """
    try:
        mode = os.lstat(output).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent, or under a file: check_writable names the fault
        return False
    except OSError as exc:  # a name too long, a loop of links above it
        raise click.ClickException(f"{output}: cannot write there ({exc.strerror or exc})")
    if stat.S_ISDIR(mode):
        raise click.ClickException(f"{output}: is a folder")
    for test, kind in _NOT_REGULAR:
        if test(mode):
            hint = "; -o - writes to standard output" if str(output).startswith("/dev/") else ""
            raise click.ClickException(f"{output}: is {kind}, not a regular file; hvq writes regular files only{hint}")
    return True


def check_target(output: Path, inputs: list[Path], force: bool, stdout_ok: bool = False) -> None:
    """Refuse, before any work, to write over an input, over an existing file unless forced, or where no file can go.

    ``stdout_ok``: ``-`` means standard output (refused when it is a terminal).
    """
    if output == STDIO:
        if not stdout_ok:
            raise click.BadParameter("this command cannot write to standard output (-); give a file name",
                                     param_hint="-o")
        check_stdout()
        return
    resolved = os.path.realpath(output)  # realpath, not Path.resolve: a loop of links is a name, not an error
    if any(p != STDIO and resolved == os.path.realpath(p) for p in inputs):
        raise click.ClickException(f"{output}: refusing to overwrite an input file")
    if _refuse_special(output) and not force:
        raise click.ClickException(f"{output}: exists (use --force to overwrite)")
    check_writable(output)


def check_run_folder(folder: Path) -> None:
    """Refuse a run folder (``hvq train -o``) that is a file, device, FIFO or dangling link: one line, not a traceback."""
    if folder == STDIO:
        raise click.BadParameter("a run is a folder; - (standard output) cannot hold one", param_hint="-o")
    try:
        mode = os.stat(folder).st_mode  # a link to a folder is that folder
    except FileNotFoundError:
        if os.path.islink(folder):
            raise click.ClickException(f"{folder}: is a dangling symbolic link, not a folder")
        return
    except OSError as exc:
        raise click.ClickException(f"{folder}: cannot make a run folder there ({exc.strerror or exc})")
    if not stat.S_ISDIR(mode):
        kind = next((k for test, k in _NOT_REGULAR if test(mode)), "a file")
        raise click.ClickException(f"{folder}: is {kind}, not a folder")


def check_stdout() -> None:
    if click.get_binary_stream("stdout").isatty():
        raise click.UsageError("refusing to write binary data to a terminal: redirect it (-o - > out) or give -o FILE")


def into_folder(output: Path | None, source: Path, name: str) -> Path | None:
    """``-o`` as given, or, for ``-o FOLDER/`` (a trailing slash), ``FOLDER/name`` (``name``: of ``source``'s output)."""
    from hvq.cli.options import FolderPath

    if not isinstance(output, FolderPath):
        return output
    if source == STDIO:
        raise click.BadParameter("standard input has no name to put in a folder: give -o FILE", param_hint="-o")
    return Path(output, name)


def write_output(output: Path, data: bytes) -> None:
    """``write_atomic``, or all of ``data`` to standard output for ``-``."""
    if output != STDIO:
        write_atomic(output, data)
        return
    stream = click.get_binary_stream("stdout")
    try:
        stream.write(data)
        stream.flush()
    except OSError as exc:  # a closed pipe (hvq ... -o - | head -c 10)
        raise click.ClickException(f"-: cannot write to standard output ({exc.strerror or exc})") from None


@lru_cache(maxsize=None)
def writable_format(suffix: str) -> str:
    """The Pillow format an output suffix names, if Pillow writes RGB images in it; else a usage error.

    Checked on a small image before any decoding: formats Pillow only reads
    (.psd, .pcd ...), writes only for other modes (.xbm: 1-bit), or that
    store resized copies (.ico, .icns) would fail, or shrink the picture,
    after the work.
    """
    import io

    from PIL import Image

    Image.init()
    image_format = Image.registered_extensions().get(suffix.lower())
    if image_format is None:
        raise click.BadParameter(f"{suffix or 'no suffix'} is not an image format Pillow writes", param_hint="-o")
    if image_format == "HVQ":  # registered by the Pillow plugin in this process
        raise click.BadParameter(".hvq is what decompress reads; hvq strip makes a smaller .hvq", param_hint="-o")
    if image_format in ("ICO", "ICNS"):
        raise click.BadParameter(f"{suffix} is an icon format, which stores resized copies; write .png",
                                 param_hint="-o")
    if image_format not in Image.SAVE:
        raise click.BadParameter(f"{suffix}: Pillow reads {image_format} but cannot write it", param_hint="-o")
    try:
        Image.new("RGB", (16, 16), (40, 90, 200)).save(io.BytesIO(), format=image_format)
    except Exception as exc:  # noqa: BLE001 -- any refusal of Pillow's (KeyError, OSError, ValueError ...)
        raise click.BadParameter(f"{suffix}: Pillow cannot write RGB images as {image_format} ({exc})",
                                 param_hint="-o") from None
    return image_format


def show_warnings_as_lines() -> None:
    """hvq's warnings about an input (frames, ICC profile) as one ``Warning: ...`` line each on stderr."""
    from hvq.bitstream.errors import HvqImageWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, HvqImageWarning):
            from tqdm import tqdm

            tqdm.write(f"Warning: {message}", file=sys.stderr)  # on its own line under a progress bar
        else:
            shown(message, category, filename, lineno, file, line)

    if getattr(warnings.showwarning, "__name__", "") != "show":
        warnings.showwarning = show
    warnings.simplefilter("always", HvqImageWarning)  # every file's, not once per process


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


_TEMP_EXTRA = len(".") + len(".") + 8 + len(".part")  # ".NAME." + mkstemp's 8 characters + ".part"


def _temp_prefix(output: Path) -> str:
    """``.NAME.``, with NAME cut so the temporary name fits where a legal 255-byte NAME does."""
    try:
        limit = os.pathconf(output.parent if output.parent.exists() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    name = output.name
    while len(os.fsencode(name)) > limit - _TEMP_EXTRA:
        name = name[:-1]
    return f".{name}."


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
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(output), suffix=".part", dir=output.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
                _refuse_special(output)  # again: a link or device made there while the work ran
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
