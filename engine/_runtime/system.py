"""System metrics: what the machine, the process and its GPUs use while a run goes on.

``SystemSampler.sample()`` reads, with psutil, one ``Sample``: a step (whole seconds since
the run started) and values under ``system/``:

==================================  ==========================================================
``system/cpu/percent``              CPU use of the whole machine, 0-100 (all cores averaged),
                                    since the sample before: data loader workers and other
                                    processes count, as they compete with training
``system/memory/process_rss_mib``   resident memory of this process (children not counted)
``system/memory/percent``           memory in use on the machine, 0-100
``system/disk/read_mib``            MiB read from the machine's disks since the sampler
``system/disk/write_mib``           started (and written)
``system/network/sent_mib``         MiB sent and received on every interface (loopback
``system/network/received_mib``     included) since the sampler started
``system/gpu/<i>/utilization``      per NVIDIA GPU, when NVML is there: its utilisation
                                    (0-100), ``memory_used_mib``, ``temperature_c``, ``power_w``
==================================  ==========================================================

A value the machine cannot give (no disk counters in a container, a GPU that does not report
its power) is left out of that sample. GPUs come from nvidia-ml-py (``pip install
kittiwake[gpu]``) when it imports and NVML starts; otherwise there are no ``system/gpu/…``
values at all.

Steps rise strictly, as every metric's must: a sample that lands in the same whole second as
the one before takes the next second. Hence intervals of at least ``MIN_INTERVAL`` (1 s).

``run(emit, interval)`` samples every ``interval`` seconds (first after one interval: a CPU
share needs a span to measure) until cancelled, each sample read on a worker thread so the
event loop never waits on ``/proc`` or NVML, and hands it to ``emit`` on the event loop.
Measured (``bench/system.py``, a loaded 2-core machine): a sample costs about 0.6 ms of CPU,
and the whole loop, hand-offs and wake-ups included, about 1.7 ms a sample: under 0.02% of a
core at the default 10 s, 0.2% at 1 s.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
import psutil

from engine.errors import ValidationError

__all__ = ["DEFAULT_INTERVAL", "MIN_INTERVAL", "NvmlGpus", "Sample", "SystemSampler"]

DEFAULT_INTERVAL: Final = 10.0
MIN_INTERVAL: Final = 1.0
_MIB = 2**20


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading: ``step`` (whole seconds since the run started) and ``values`` (metric
    name → float)."""

    step: int
    values: dict[str, float]


class NvmlGpus:
    """The NVIDIA GPUs of the machine, read through NVML (``pynvml`` or a stand-in with the
    same functions). Made by ``open``, which gives None where there is none to read."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls, nvml: Any = None, *, module: str = "pynvml") -> NvmlGpus | None:
        """Start NVML (``nvml``, or the module named ``module`` imported) and find the GPUs;
        None if it does not import, does not start, or finds no GPU."""
        if nvml is None:
            try:
                nvml = importlib.import_module(module)
            except ImportError:
                return None
        try:
            nvml.nvmlInit()
        except Exception:  # no driver, no library: NVML's own errors, whatever the version
            return None
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(index)
                       for index in range(nvml.nvmlDeviceGetCount())]
        except Exception:
            handles = []
        if not handles:
            nvml.nvmlShutdown()
            return None
        return cls(nvml, handles)

    def read(self) -> dict[str, float]:
        """Each GPU's utilisation, memory used, temperature and power, where it reports
        them."""
        values: dict[str, float] = {}
        for index, handle in enumerate(self._handles):
            for name, value in _gpu_values(self._nvml, handle).items():
                values[f"system/gpu/{index}/{name}"] = value
        return values

    def close(self) -> None:
        """Shut NVML down."""
        if self._handles:
            self._handles = []
            self._nvml.nvmlShutdown()


class SystemSampler:
    """Samples the metrics listed in the module docstring for one run.

    :param started_at: when the run started (``clock()`` time); steps count from it.
        Default: now.
    :param clock: the wall clock, ``time.time`` unless a test fakes it.
    :param gpus: the GPUs to read; ``"auto"`` finds them through pynvml, None reads none.

    Making one takes the first readings (and, with ``"auto"``, starts NVML): on an event
    loop, use ``await SystemSampler.create(...)``.
    """

    def __init__(self, started_at: float | None = None, *,
                 clock: Callable[[], float] = time.time,
                 gpus: NvmlGpus | Literal["auto"] | None = "auto") -> None:
        self._clock = clock
        self.started_at = clock() if started_at is None else started_at
        self._process = psutil.Process()
        self._gpus = NvmlGpus.open() if gpus == "auto" else gpus
        self._last_step = -1
        self._cpu = _cpu_times()
        self._disk = _counters(psutil.disk_io_counters, "read_bytes", "write_bytes")
        self._network = _counters(psutil.net_io_counters, "bytes_sent", "bytes_recv")

    @classmethod
    async def create(cls, started_at: float | None = None, *,
                     clock: Callable[[], float] = time.time,
                     gpus: NvmlGpus | Literal["auto"] | None = "auto") -> SystemSampler:
        """A sampler made on a worker thread, for code on an event loop: starting NVML and
        taking the first readings can take a while (NVML: up to seconds on some machines)."""
        make = functools.partial(cls, started_at, clock=clock, gpus=gpus)
        return await anyio.to_thread.run_sync(make)

    def sample(self) -> Sample:
        """Read every metric now. Blocking for up to a few milliseconds (``/proc``, NVML):
        ``run`` calls it on a worker thread."""
        step = max(math.floor(self._clock() - self.started_at), self._last_step + 1, 0)
        self._last_step = step
        values: dict[str, float] = {}
        cpu = _cpu_times()
        if self._cpu is not None and cpu is not None:
            busy, total = cpu[0] - self._cpu[0], cpu[1] - self._cpu[1]
            values["system/cpu/percent"] = min(100.0, max(0.0, 100 * busy / total)) if total \
                else 0.0
            self._cpu = cpu
        try:
            values["system/memory/process_rss_mib"] = self._process.memory_info().rss / _MIB
            values["system/memory/percent"] = float(psutil.virtual_memory().percent)
        except (psutil.Error, OSError):
            pass
        for names, start, now in (
                (("system/disk/read_mib", "system/disk/write_mib"), self._disk,
                 _counters(psutil.disk_io_counters, "read_bytes", "write_bytes")),
                (("system/network/sent_mib", "system/network/received_mib"), self._network,
                 _counters(psutil.net_io_counters, "bytes_sent", "bytes_recv"))):
            if start is not None and now is not None:
                for name, first, last in zip(names, start, now, strict=True):
                    values[name] = max(0, last - first) / _MIB
        if self._gpus is not None:
            values.update(self._gpus.read())
        return Sample(step, values)

    async def run(self, emit: Callable[[Sample], Awaitable[None] | None],
                  interval: float = DEFAULT_INTERVAL) -> None:
        """Sample every ``interval`` seconds and hand each sample to ``emit`` (awaited if it
        returns an awaitable), until cancelled. Late wake-ups do not pile up: a sample that
        is due while the one before is still going is skipped.

        :raises ValidationError: for an interval shorter than ``MIN_INTERVAL`` seconds.
        :raises Exception: whatever ``emit`` raised; sampling ends there.
        """
        if (not isinstance(interval, (int, float)) or isinstance(interval, bool)
                or not math.isfinite(interval) or interval < MIN_INTERVAL):
            raise ValidationError(
                f"system_metrics_interval must be a number of seconds >= {MIN_INTERVAL:g} "
                f"(a step is a whole second), not {interval!r}", key="system_metrics_interval")
        due = anyio.current_time() + interval
        while True:
            await anyio.sleep_until(due)
            sample = await anyio.to_thread.run_sync(self.sample)
            result = emit(sample)
            if inspect.isawaitable(result):
                await result
            due += interval
            now = anyio.current_time()
            if due <= now:
                due = now + interval - (now - due) % interval

    def close(self) -> None:
        """Let go of NVML (nothing else is held)."""
        if self._gpus is not None:
            self._gpus.close()

    def __enter__(self) -> SystemSampler:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _gpu_values(nvml: Any, handle: Any) -> dict[str, float]:
    """What one GPU reports of its utilisation, memory used, temperature and power."""
    readers: dict[str, Callable[[], Any]] = {
        "utilization": lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu,
        "memory_used_mib": lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / _MIB,
        "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(handle,
                                                               nvml.NVML_TEMPERATURE_GPU),
        "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000,  # from milliwatts
    }
    values: dict[str, float] = {}
    for name, reader in readers.items():
        try:
            values[name] = float(reader())
        except Exception:  # not supported by this GPU, or it fell off the bus
            continue
    return values


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the machine so far, counted as psutil counts them."""
    try:
        times = psutil.cpu_times()
    except (psutil.Error, OSError):
        return None
    total = sum(times)
    if sys.platform.startswith("linux"):
        # Guest time is already inside user and nice there; counting it twice would skew.
        total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def _counters(read: Callable[[], Any], *fields: str) -> tuple[int, ...] | None:
    """The named fields of a psutil counter read now; None where the machine has none."""
    try:
        counters = read()
    except (psutil.Error, OSError, RuntimeError):
        return None
    if counters is None:
        return None
    return tuple(getattr(counters, field) for field in fields)
