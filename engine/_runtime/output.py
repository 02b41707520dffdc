"""Capturing the process's standard output and error at the file-descriptor level.

``OutputCapture`` points descriptors 1 and 2 at pipes while it is active, so everything the
process writes there is seen: ``print``, C extensions writing to fd 1 or through C's
``stdio``, and child processes, which inherit the descriptors. A reader thread passes every
byte on, unchanged, to where the descriptor pointed before (colours and progress bars
included), and cuts each stream into lines for a callback ``on_line(stream, number, text)``.

When the original descriptor is a terminal, a pseudo-terminal stands in for the pipe, so
programs that ask ``isatty()`` (to decide on colours, say) still get a yes; its window size
is the terminal's at start. Otherwise it is a plain pipe, as the program had before.

Lines are cut as a terminal shows them (``lines.LineSplitter``): a progress bar redrawn with
carriage returns is kept in its final form, undecodable bytes become U+FFFD, and a line over
``MAX_LINE_BYTES`` (1 MiB of UTF-8) becomes several pieces.

Line numbers count from 0 per stream (or from ``first_lines``) and go on across a stop and a
restart of the same capture.

Threads: ``on_line`` runs on the reader thread, one call at a time, never concurrently, in
the order lines were read (per stream; between stdout and stderr the order is that of
reading, as with any pipe). It must not write to stdout or stderr itself. ``stop()`` returns
only after the callback has returned for everything written before it was called: it
flushes ``sys.stdout``/``sys.stderr`` (whatever objects they are — under pytest they are not
the descriptors) and C's ``stdio`` buffers, restores the descriptors, and drains the pipes.
While capturing, a ``sys.stdout`` that writes to fd 1 is line-buffered, so lines arrive as
they are printed. A slow callback slows the writers once the pipe (64 KiB) is full; it never
drops output.

One capture per process: descriptors are process-wide, so starting a second one (nested or
from another thread) raises ``CaptureBusyError`` (a ``RuntimeError``), which names the
``owner`` of the capture that holds them. A child process still holding the pipe when
capture stops (started in the block, still running) keeps writing: a relay thread passes its
bytes on to the original descriptor until it closes them, without recording them.

Limits: POSIX only (Linux, macOS; ``SUPPORTED`` says). A process killed outright (a
segfault, ``os._exit``) may lose what sat in the pipe in its last instant, from the record
and from the terminal. Interpreter exit with capture still on restores the descriptors first.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import io
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final, Literal

from .lines import MAX_LINE_BYTES, LineSplitter

__all__ = ["MAX_LINE_BYTES", "SUPPORTED", "CaptureBusyError", "LineCallback", "OutputCapture",
           "Stream"]

Stream = Literal["stdout", "stderr"]
LineCallback = Callable[[Stream, int, str], None]
"""``on_line(stream, line_number, text)``, called on the reader thread."""

SUPPORTED: Final = os.name == "posix"

_DESCRIPTORS: Final[dict[Stream, int]] = {"stdout": 1, "stderr": 2}
_CHUNK = 65536
_DRAIN_SECONDS = 2.0  # a child writing without pause cannot hold stop() longer than this


class CaptureBusyError(RuntimeError):
    """Another capture holds the process's descriptors.

    :ivar owner: the ``owner`` that capture was made with (None: it named none).
    """

    def __init__(self, owner: str | None) -> None:
        held = "" if owner is None else f" (for {owner})"
        super().__init__(f"another output capture is active in this process{held}; stdout "
                         "and stderr can be captured by one at a time")
        self.owner = owner


class _Channel:
    """One captured descriptor: its pipe, where its bytes go, and its lines so far."""

    def __init__(self, name: Stream, fd: int, number: int) -> None:
        self.name = name
        self.fd = fd
        self.number = number
        self.saved: int | None = None  # a duplicate of the original; None if fd was closed
        self.read = -1
        self.open = True  # until the pipe reports end of file
        self.passing = True  # until writing to the original fails (its reader went away)
        self.lines = LineSplitter()

    def redirect(self) -> None:
        """Point the descriptor at a new pipe (or pseudo-terminal) read by ``self.read``."""
        try:
            self.saved = os.dup(self.fd)
        except OSError:
            self.saved = None
        if self.saved is not None and os.isatty(self.saved):
            self.read, write = _terminal_pair(self.saved)
        else:
            self.read, write = os.pipe()
        os.dup2(write, self.fd)
        os.close(write)
        os.set_blocking(self.read, False)

    def restore(self) -> None:
        """Point the descriptor back where it pointed before ``redirect``."""
        if self.saved is None:
            os.close(self.fd)
        else:
            os.dup2(self.saved, self.fd)

    def pass_on(self, data: bytes) -> None:
        """Write ``data`` to the original descriptor, whole."""
        view = memoryview(data)
        while view and self.saved is not None and self.passing:
            try:
                view = view[os.write(self.saved, view):]
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                self.passing = False

    def close(self) -> None:
        """Close what the channel still holds."""
        for fd in (self.read, self.saved):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.read, self.saved = -1, None


def _terminal_pair(original: int) -> tuple[int, int]:
    """A pseudo-terminal (read end, write end) that passes bytes as they are (no ``\\r``
    added before ``\\n``), sized like the terminal ``original``."""
    import fcntl
    import termios

    read, write = os.openpty()
    attributes = termios.tcgetattr(write)
    attributes[1] &= ~termios.OPOST
    termios.tcsetattr(write, termios.TCSANOW, attributes)
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(original, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(write, termios.TIOCSWINSZ, size)
    return read, write


class OutputCapture:
    """Captures fds 1 and 2, passing every byte on and handing each line to ``on_line``.

    Use it as a context manager, or ``start()`` and ``stop()`` (it can start again after a
    stop). See the module docstring for how lines are cut and on which thread ``on_line``
    runs.

    :param on_line: called as ``on_line(stream, line_number, text)`` for each line.
    :param first_lines: the number of the first line per stream (default 0), for a run
        that goes on from lines it recorded before.
    :param owner: who the capture is for, named to a capture refused while this one is on.
    """

    def __init__(self, on_line: LineCallback, *,
                 first_lines: Mapping[Stream, int] | None = None,
                 owner: str | None = None) -> None:
        self._on_line = on_line
        self.owner = owner
        first = dict(first_lines or {})
        for name, number in first.items():
            if name not in _DESCRIPTORS or type(number) is not int or number < 0:
                raise ValueError(f"first_lines maps 'stdout' and 'stderr' to line numbers "
                                 f">= 0, not {name!r}: {number!r}")
        self._numbers: dict[Stream, int] = {name: first.get(name, 0) for name in _DESCRIPTORS}
        self._channels: list[_Channel] = []
        self._thread: threading.Thread | None = None
        self._wake = (-1, -1)
        self._error: BaseException | None = None
        self._buffered: list[io.TextIOWrapper] = []

    @property
    def active(self) -> bool:
        """Whether the capture is on."""
        return self._thread is not None

    def start(self) -> None:
        """Point fds 1 and 2 at pipes and start reading them.

        :raises RuntimeError: if this capture is already active.
        :raises CaptureBusyError: if another capture is active.
        :raises NotImplementedError: on a system without POSIX descriptors.
        """
        global _active
        if not SUPPORTED:
            raise NotImplementedError("output capture at the descriptor level needs a POSIX "
                                      "system (Linux, macOS)")
        with _lock:
            if _active is self:
                raise RuntimeError("this output capture is already active")
            if _active is not None:
                raise CaptureBusyError(_active.owner)
            _flush_all()
            channels = [_Channel(name, fd, self._numbers[name])
                        for name, fd in _DESCRIPTORS.items()]
            try:
                for channel in channels:
                    channel.redirect()
            except BaseException:
                for channel in channels:
                    if channel.read >= 0:
                        channel.restore()
                    channel.close()
                raise
            self._channels = channels
            self._wake = os.pipe()
            self._buffered = _line_buffer()
            self._thread = threading.Thread(target=self._read, name="kittiwake-output",
                                            daemon=True)
            self._thread.start()
            _active = self
            _register_exit()

    def stop(self) -> None:
        """Restore fds 1 and 2 and return once every line written before has been handed to
        ``on_line`` (the last, unfinished one included). Nothing happens if not active.

        :raises Exception: the first exception ``on_line`` raised while capturing (after it,
            output was still passed on, but no more lines were handed over).
        """
        global _active
        with _lock:
            if _active is not self or self._thread is None:
                return
            _flush_all()
            for stream in self._buffered:
                with contextlib.suppress(ValueError, OSError):
                    stream.reconfigure(line_buffering=False)
            for channel in self._channels:
                channel.restore()
            os.write(self._wake[1], b"x")
            self._thread.join()
            for fd in self._wake:
                os.close(fd)
            for channel in self._channels:
                self._numbers[channel.name] = channel.number
            self._thread, self._channels, self._buffered, _active = None, [], [], None
            error, self._error = self._error, None
        if error is not None:
            raise error

    def __enter__(self) -> OutputCapture:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self.stop()
        except Exception as error:
            if exc is not None:
                error.__context__ = exc  # the block's own failure stays visible
            raise

    # The reader thread ---------------------------------------------------------------------

    def _read(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            for channel in self._channels:
                selector.register(channel.read, selectors.EVENT_READ, channel)
            selector.register(self._wake[0], selectors.EVENT_READ, None)
            stopping = False
            while not stopping:
                for key, _ in selector.select():
                    if key.data is None:
                        stopping = True
                    elif not self._pump(key.data):
                        selector.unregister(key.fd)
            self._drain()
        except BaseException as exc:  # handed to stop(); the descriptors are restored there
            self._error = self._error or exc
        finally:
            selector.close()
            for channel in self._channels:
                if channel.open and channel.read >= 0:
                    _relay(channel)
                else:
                    channel.close()

    def _drain(self) -> None:
        """Everything still in the pipes (the descriptors are restored by now), and each
        stream's unfinished last line."""
        deadline = time.monotonic() + _DRAIN_SECONDS
        for channel in self._channels:
            while channel.open and self._pump(channel) and time.monotonic() < deadline:
                pass
            for text in channel.lines.finish():
                self._emit(channel, text)

    def _pump(self, channel: _Channel) -> bool:
        """Read once from ``channel``; False when nothing more is there for now, or ever."""
        try:
            data = os.read(channel.read, _CHUNK)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno != errno.EIO:  # a pseudo-terminal whose writers all closed it
                raise
            data = b""
        if not data:
            channel.open = False
            return False
        channel.pass_on(data)
        for text in channel.lines.feed(data):
            self._emit(channel, text)
        return True

    def _emit(self, channel: _Channel, text: str) -> None:
        number = channel.number
        channel.number += 1
        if self._error is not None:
            return
        try:
            self._on_line(channel.name, number, text)
        except Exception as exc:
            self._error = exc


def _relay(channel: _Channel) -> None:
    """Pass on what a writer that outlived the capture still writes, until it closes."""

    def relay() -> None:
        try:
            os.set_blocking(channel.read, True)
            while data := _read_or_eof(channel.read):
                channel.pass_on(data)
        finally:
            channel.close()

    threading.Thread(target=relay, name="kittiwake-output-relay", daemon=True).start()


def _read_or_eof(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError:
        return b""


def _flush_all() -> None:
    """Flush Python's standard streams (the current objects and the original ones) and C's
    ``stdio`` buffers, so what was written so far goes where the descriptors point now."""
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    for stream in {id(s): s for s in streams if s is not None}.values():
        with contextlib.suppress(ValueError, OSError, AttributeError):
            stream.flush()
    global _libc
    with contextlib.suppress(OSError, AttributeError):
        _libc = _libc or ctypes.CDLL(None)
        _libc.fflush(None)


def _line_buffer() -> list[io.TextIOWrapper]:
    """Make ``sys.stdout``/``sys.stderr`` line-buffered where they write to fds 1 and 2;
    the streams changed, to change back."""
    changed: list[io.TextIOWrapper] = []
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper) or stream.line_buffering:
            continue
        with contextlib.suppress(ValueError, OSError):
            if stream.fileno() in (1, 2):
                stream.reconfigure(line_buffering=True)
                changed.append(stream)
    return changed


_lock = threading.Lock()
_active: OutputCapture | None = None
_libc: ctypes.CDLL | None = None
_exit_registered = False


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        atexit.register(_stop_active)
        _exit_registered = True


def _stop_active() -> None:
    """At interpreter exit: restore the descriptors before Python's last flush."""
    capture = _active
    if capture is not None:
        with contextlib.suppress(Exception):
            capture.stop()


def _forget_in_child() -> None:
    """A forked child writes into its parent's pipes, read by the parent; it holds no
    capture of its own (and no lock another thread held at the fork)."""
    global _active, _lock
    _active = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
