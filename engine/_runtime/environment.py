"""Where a run ran and what code it ran: its environment, and its source files.

``environment()`` gives flat paths, ready for the run's ``env``: ``host/name``,
``os/platform``, ``python/version``, ``python/executable``, ``command/argv``,
``command/cwd``, ``user``, ``pid``, and inside a git work tree ``git/commit``, ``git/branch``,
``git/remote`` and ``git/dirty``. Anything that cannot be known is left out rather than
guessed: no ``git/branch`` on a detached HEAD, no ``git/commit`` before the first commit, no
``git/remote`` without one, no ``git/…`` at all outside a work tree or without git, no
``user`` without a name for the uid. Text that is not valid Unicode (an undecodable file
name in ``argv``) has U+FFFD in its place, so every value passes the config checks.

The work tree is the one holding the current directory, as for ``git`` typed there.
``git/dirty`` says whether tracked files differ from the commit (untracked files do not
count: scanning for them is slow in large trees). ``git/remote`` is the URL of the current
branch's upstream remote, else ``origin``, else the first remote, with any credentials in it
removed.

Git runs at most once per process for each work tree (and each question: its facts, its diff,
a list of globs); the answers are kept, under a lock, for every later run of the process. So
``git/dirty`` tells how the tree was when the process first asked. Git is given
``GIT_OPTIONAL_LOCKS=0``, so it never takes the index lock from under the user's own git
commands, and 10 seconds before it counts as absent. ``environment_async`` runs the first
call on a worker thread, so the event loop never waits for git; call it early (when the
tracker opens) and a run's start finds it known. Measured (``bench/system.py``, a loaded
2-core machine, in this repository's work tree): the first call takes about 20 ms (three git
processes) on its thread, during which the event loop is held about 2.5 ms in all (GIL
hand-offs); once known, a call takes 0.06 ms.

``source_files(capture)`` lists what to upload as the run's source: the script that started
the process (``sys.argv[0]`` when it is a file) as ``source/<file name>``, ``git diff HEAD``
as ``source/git.diff`` (bytes; left out when empty), and for globs (``"src/**/*.py"``; ``**``
spans directories) the files they match as ``source/<path>``, relative to the work tree's
root — leaving out what git ignores — or to the current directory outside one. In that
order, files are taken until the next would pass ``limit`` bytes (10 MiB by default); it and
all after it are left out, and a warning names the limit and what was left out. It reads the
file system and may run git: call it off the event loop (``source_files_async``).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import platform
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread

from engine._core.validate import check_key, normalize_config
from engine.errors import ValidationError

__all__ = ["DEFAULT_SOURCE_LIMIT", "check_patterns", "environment", "environment_async", "known",
           "source_files", "source_files_async"]

DEFAULT_SOURCE_LIMIT: Final = 10 * 2**20
GIT_TIMEOUT: Final = 10.0

Source = tuple[str, Path | bytes]

_lock = threading.Lock()
_static: dict[str, Any] | None = None
_trees: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = {}  # (git, cwd) -> root, facts
_diffs: dict[tuple[str, str], bytes] = {}
_listings: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
_envs: dict[tuple[str, str | None, tuple[str, ...], int], dict[str, Any]] = {}  # checked


def environment(*, git: str = "git") -> dict[str, Any]:
    """The environment of this process as flat paths (module docstring); runs git the first
    time only. ``git`` names the git executable."""
    cwd = _cwd()
    key = (git, cwd, tuple(sys.argv), os.getpid())
    known_env = _envs.get(key)
    if known_env is None:
        known_env = _envs[key] = _environment(git, cwd)
    return dict(known_env)


def _environment(git: str, cwd: str | None) -> dict[str, Any]:
    env = dict(_static_facts())
    env["command/argv"] = [_text(arg) for arg in sys.argv]
    env["pid"] = os.getpid()
    if cwd is not None:
        env["command/cwd"] = _text(cwd)
        tree = _tree(git, cwd)
        if tree is not None:
            env.update(tree[1])
    return normalize_config(env)


def known(*, git: str = "git") -> bool:
    """Whether ``environment()`` would answer without running git (it ran before)."""
    cwd = _cwd()
    return _static is not None and (cwd is None or (git, cwd) in _trees)


async def environment_async(*, git: str = "git") -> dict[str, Any]:
    """``environment()``, its first call (the one that runs git) on a worker thread."""
    if known(git=git):
        return environment(git=git)
    return await anyio.to_thread.run_sync(functools.partial(environment, git=git))


def source_files(capture: bool | Sequence[str], *, limit: int = DEFAULT_SOURCE_LIMIT,
                 git: str = "git") -> list[Source]:
    """The run's source as ``(key, path or bytes)``, at most ``limit`` bytes in all (module
    docstring); ``capture`` is True, False (nothing), or globs of more files to add.

    :raises ValidationError: for a glob that is not a relative pattern inside the tree.
    """
    if capture is False:
        return []
    patterns = () if capture is True else check_patterns(capture)
    candidates: list[tuple[str, Path | bytes, int]] = []
    script = _script()
    if script is not None:
        candidates.append((f"source/{script.name}", script, _size(script)))
    cwd = _cwd()
    tree = _tree(git, cwd) if cwd is not None else None
    if tree is not None:
        diff = _diff(git, tree[0])
        if diff:
            candidates.append(("source/git.diff", diff, len(diff)))
    base = tree[0] if tree is not None else cwd
    if patterns and base is not None:
        for relative in _matches(git, base, patterns, in_tree=tree is not None):
            path = Path(base, relative)
            candidates.append((f"source/{relative}", path, _size(path)))
    return _within(candidates, limit)


async def source_files_async(capture: bool | Sequence[str], *,
                             limit: int = DEFAULT_SOURCE_LIMIT,
                             git: str = "git") -> list[Source]:
    """``source_files`` on a worker thread."""
    call = functools.partial(source_files, capture, limit=limit, git=git)
    return await anyio.to_thread.run_sync(call)


# The environment ---------------------------------------------------------------------------


def _static_facts() -> dict[str, Any]:
    """What stays the same for the life of the process, worked out once."""
    global _static
    if _static is None:
        facts: dict[str, Any] = {"host/name": _text(socket.gethostname()),
                                 "os/platform": _os_platform(),
                                 "python/version": platform.python_version()}
        if sys.executable:
            facts["python/executable"] = _text(sys.executable)
        with contextlib.suppress(KeyError, OSError):  # no login name, no passwd entry
            facts["user"] = _text(getpass.getuser())
        _static = facts
    return _static


def _os_platform() -> str:
    """``platform.platform()``'s answer; on Linux made without it, as it reads the whole
    Python executable to find the C library's version (30 ms of held GIL)."""
    if sys.platform.startswith("linux"):
        name = os.uname()
        platform_ = f"{name.sysname}-{name.release}-{name.machine}"
        with contextlib.suppress(ValueError, OSError):
            libc = os.confstr("CS_GNU_LIBC_VERSION")
            if libc:
                platform_ += "-with-" + libc.replace(" ", "")
        return platform_
    return platform.platform()


def _tree(git: str, cwd: str) -> tuple[str, dict[str, Any]] | None:
    """The work tree holding ``cwd``: its root and its git facts; None outside one."""
    key = (git, cwd)
    with _lock:
        if key not in _trees:
            _trees[key] = _read_tree(git, cwd)
        return _trees[key]


def _read_tree(git: str, cwd: str) -> tuple[str, dict[str, Any]] | None:
    top = _git(git, cwd, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    root = os.fsdecode(top.rstrip(b"\n"))
    facts: dict[str, Any] = {}
    upstream = None
    status = _git(git, root, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is not None:
        dirty = False
        for line in os.fsdecode(status).splitlines():
            name, _, value = line.removeprefix("# ").partition(" ")
            if not line.startswith("# "):
                dirty = True
            elif name == "branch.oid" and value != "(initial)":
                facts["git/commit"] = value
            elif name == "branch.head" and value != "(detached)":
                facts["git/branch"] = _text(value)
            elif name == "branch.upstream":
                upstream = value
        facts["git/dirty"] = dirty
    remote = _remote(git, root, upstream)
    if remote is not None:
        facts["git/remote"] = remote
    return root, facts


def _remote(git: str, root: str, upstream: str | None) -> str | None:
    listed = _git(git, root, "config", "--get-regexp", r"^remote\..*\.url$")
    if not listed:
        return None
    urls: dict[str, str] = {}
    for line in os.fsdecode(listed).splitlines():
        name, _, url = line.partition(" ")
        urls[name.removeprefix("remote.").removesuffix(".url")] = url
    names = sorted(urls, key=len, reverse=True)
    chosen = next((n for n in names if upstream and upstream.startswith(n + "/")), None)
    chosen = chosen or ("origin" if "origin" in urls else next(iter(urls)))
    return _text(_without_credentials(urls[chosen]))


def _without_credentials(url: str) -> str:
    """``url`` without a password, or, for http(s), without any user name either (tokens
    are often given as one)."""
    if "://" not in url:
        return url  # scp-like "git@host:path": a user name, never a secret
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") and parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit(parts._replace(netloc=host))


def _git(git: str, cwd: str, *args: str) -> bytes | None:
    """What ``git args`` printed, or None if it failed, timed out or git is not there."""
    try:
        done = subprocess.run([git, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=GIT_TIMEOUT, check=False,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except subprocess.TimeoutExpired:
        warnings.warn(f"git {args[0]} took more than {GIT_TIMEOUT:g} s in {cwd}; the run "
                      "records no git information from it", stacklevel=4)
        return None
    except OSError:  # no git installed, or the directory is gone
        return None
    return done.stdout if done.returncode == 0 else None


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the current directory was removed
        return None


def _text(value: str) -> str:
    """``value`` as valid Unicode: undecodable bytes (kept by Python as lone surrogates)
    become U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# The source --------------------------------------------------------------------------------


def _script() -> Path | None:
    if not sys.argv or not sys.argv[0] or not os.path.isfile(sys.argv[0]):
        return None
    return Path(sys.argv[0]).resolve()


def _size(path: Path) -> int:
    """The size of ``path``; 0 if it went away since it was found (its upload will say)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _diff(git: str, root: str) -> bytes:
    key = (git, root)
    with _lock:
        if key not in _diffs:
            _diffs[key] = _git(git, root, "diff", "HEAD", "--no-color", "--no-ext-diff") or b""
        return _diffs[key]


def check_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    """``capture_source``'s globs, each relative and inside the tree.

    :raises ValidationError: naming ``capture_source``.
    """
    if isinstance(patterns, str):
        patterns = (patterns,)
    checked = []
    for pattern in patterns:
        if (type(pattern) is not str or not pattern or pattern.startswith("/")
                or ".." in pattern.split("/") or "\x00" in pattern):
            raise ValidationError(
                f"capture_source pattern {pattern!r} is not allowed; use globs relative to "
                "the work tree (or the current directory), such as 'src/**/*.py'",
                key="capture_source")
        checked.append(pattern)
    return tuple(checked)


def _matches(git: str, base: str, patterns: tuple[str, ...], *, in_tree: bool) -> list[str]:
    """The files under ``base`` that ``patterns`` match, as sorted relative POSIX paths."""
    key = (git if in_tree else "", base, patterns)
    with _lock:
        if key not in _listings:
            found = _git_matches(git, base, patterns) if in_tree else None
            if found is None:
                found = sorted(_walk_matches(base, patterns))
            _listings[key] = found
        return _listings[key]


def _git_matches(git: str, root: str, patterns: tuple[str, ...]) -> list[str] | None:
    """Tracked and untracked files matching ``patterns``, without what git ignores."""
    listed = _git(git, root, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                  "--", *(f":(glob){pattern}" for pattern in patterns))
    if listed is None:
        return None
    names = {os.fsdecode(name) for name in listed.split(b"\0") if name}
    return sorted(name for name in names if os.path.isfile(os.path.join(root, name)))


def _walk_matches(base: str, patterns: tuple[str, ...]) -> Iterator[str]:
    """Files under ``base`` matching ``patterns``, without following links to directories
    (a link cycle cannot loop) and never deeper than a pattern without ``**`` reaches."""
    split = [pattern.split("/") for pattern in patterns]
    deepest = None if any("**" in parts for parts in split) else max(map(len, split))
    for directory, subdirectories, files in os.walk(base):
        relative = os.path.relpath(directory, base)
        prefix = [] if relative == "." else relative.split(os.sep)
        if deepest is not None and len(prefix) + 1 >= deepest:
            subdirectories.clear()
        for name in files:
            parts = [*prefix, name]
            if any(_glob_match(pattern, parts) for pattern in split):
                yield "/".join(parts)


def _glob_match(pattern: list[str], parts: list[str]) -> bool:
    """Whether path segments ``parts`` match glob segments ``pattern`` (``**`` spans any
    number of directories, ``*`` stays within one)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (bool(parts) and fnmatchcase(parts[0], pattern[0])
            and _glob_match(pattern[1:], parts[1:]))


def _within(candidates: list[tuple[str, Path | bytes, int]], limit: int) -> list[Source]:
    """The candidates with valid, distinct keys, in order, up to ``limit`` bytes in all."""
    taken: list[Source] = []
    seen: set[str] = set()
    total = 0
    left_out: list[tuple[str, int]] = []
    unnamed: list[str] = []
    for key, source, size in candidates:
        if key in seen:
            continue
        seen.add(key)
        try:
            check_key(key)
        except ValidationError:
            unnamed.append(key)
            continue
        if left_out or total + size > limit:
            left_out.append((key, size))
            continue
        taken.append((key, source))
        total += size
    if left_out:
        names = ", ".join(key for key, _ in left_out[:5])
        more = f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""
        warnings.warn(
            f"source capture is limited to {limit} bytes ({limit / 2**20:g} MiB); left out "
            f"{len(left_out)} file(s) of {sum(size for _, size in left_out)} bytes: "
            f"{names}{more}", stacklevel=3)
    if unnamed:
        warnings.warn(f"source files whose names cannot be keys were left out: "
                      f"{', '.join(map(repr, unnamed[:5]))}", stacklevel=3)
    return taken
