"""Which backend opens a URL: a table of URL schemes, each naming the module that serves it.

The contract never imports a backend, and nothing above storage does either: the registry
imports the backend a URL names when it is opened, so a SQLite user never loads asyncpg,
and a backend whose optional dependency is missing says which extra to install.

A backend module provides ``open_url(url, *, durability, upcasters, **options) -> Store``;
only the remote backend (``engine._client``, for ``http://`` and ``https://``) takes options:
``token``, ``spool`` and ``offline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any, Protocol, cast

from engine._core.events import Upcasters
from engine.errors import ValidationError

from .contract import Store

__all__ = ["open_store"]


class Backend(Protocol):
    """What a backend module provides."""

    def open_url(self, url: str, *, durability: str, upcasters: Upcasters,
                 **options: Any) -> Store:
        """An unopened store for ``url``."""
        ...


# scheme -> (module, the extra its dependency comes with, or None)
_BACKENDS: dict[str, tuple[str, str | None]] = {
    "sqlite": ("engine._storage.sqlite.store", None),
    "postgresql": ("engine._storage.postgres.store", "postgres"),
    "postgres": ("engine._storage.postgres.store", "postgres"),
    "http": ("engine._client.store", "client"),
    "https": ("engine._client.store", "client"),
}
_REMOTE = frozenset({"http", "https"})
_KNOWN = "a file path, ':memory:', 'sqlite:///path', 'postgresql://…' or 'http(s)://…'"


def scheme_of(url: str) -> str:
    """The scheme of ``url``; a plain path (or ``:memory:``) is SQLite's."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else "sqlite"


def open_store(url: str, *, durability: str, upcasters: Upcasters,
               options: Mapping[str, Any] | None = None) -> Store:
    """An unopened store for ``url``: a file path, ``:memory:``, ``sqlite:///…``,
    ``postgresql://…``, or a server's ``http(s)://…`` (with ``options`` for it: ``token``,
    ``spool``, ``offline``).

    :raises ValidationError: for a URL no backend understands, whose backend's optional
        dependency is not installed, or options given for a database that is not remote.
    """
    if not isinstance(url, str) or not url:
        raise ValidationError(f"cannot open {url!r}: expected {_KNOWN}", key="url")
    entry = _BACKENDS.get(scheme_of(url))
    if entry is None:
        raise ValidationError(f"cannot open {url!r}: expected {_KNOWN}", key="url")
    options = {k: v for k, v in (options or {}).items() if v is not None and v is not False}
    if options and scheme_of(url) not in _REMOTE:
        name = sorted(options)[0]
        raise ValidationError(f"{name} applies to a server's http(s):// URL, not {url!r}",
                              key=name)
    name, extra = entry
    try:
        backend = cast(Backend, import_module(name))
    except ImportError as exc:
        if extra is None:
            raise
        raise ValidationError(
            f"{url.partition(':')[0]} URLs need the {extra!r} extra: "
            f"pip install 'kittiwake[{extra}]'", key="url") from exc
    return backend.open_url(url, durability=durability, upcasters=upcasters, **options)
