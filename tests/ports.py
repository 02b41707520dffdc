"""Ports for servers that a test starts on a port it chose, or stops and starts again on the
same port.

A port the kernel hands out (a bind to port 0, or the local end of a connection) is anyone's
again as soon as nothing holds it: between a probe's close and the server's bind, or while a
server is stopped to be started again, another process may be given it — under pytest-xdist,
another worker's server — and the test would then talk to that one. The ports here lie below
the kernel's ephemeral range, which it never hands out by itself, and each xdist worker draws
from a range of its own, so no other test of the run can be given them either.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_BASE = 20_000
_SPAN = 500  # ports per worker


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; other systems start theirs higher still


def _worker() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, … (unset: no xdist)
    return int(name[2:]) if name[2:].isdigit() else 0


def free_port() -> int:
    """A loopback port that is free now and that nothing else in this test run is given."""
    low = _BASE + _worker() * _SPAN
    if low + _SPAN > _ephemeral_low():  # no room below the kernel's range: take one of its
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    for _ in range(200):
        port = random.randrange(low, low + _SPAN)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # taken (by another program, or a connection still closing)
                continue
        return port
    raise RuntimeError(f"no free port from {low} to {low + _SPAN - 1}")
