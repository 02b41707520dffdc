"""System metrics: what a sample holds, its steps, GPUs through a stand-in NVML, the loop."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.lowlevel
import psutil
import pytest

from engine._runtime.system import NvmlGpus, Sample, SystemSampler
from engine.errors import ValidationError

ALWAYS = {"system/cpu/percent", "system/memory/process_rss_mib", "system/memory/percent"}
DISK = {"system/disk/read_mib", "system/disk/write_mib"}
NETWORK = {"system/network/sent_mib", "system/network/received_mib"}


class FakeNvml:
    """Stands in for pynvml: ``count`` GPUs, the second of which reports no power."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, count: int = 2, *, fails: bool = False, delay: float = 0.0) -> None:
        self.count = count
        self.fails = fails
        self.delay = delay
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fails:
            raise OSError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        time.sleep(self.delay)
        return SimpleNamespace(gpu=50 + handle, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(handle + 1) * 512 * 2**20, total=16 * 2**30)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 60 + handle

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise RuntimeError("Not Supported")
        return 250_500  # milliwatts


def test_a_sample_has_the_names_and_types() -> None:
    with SystemSampler(gpus=None) as sampler:
        time.sleep(0.05)
        sample = sampler.sample()
    expected = set(ALWAYS)
    if psutil.disk_io_counters() is not None:
        expected |= DISK
    if psutil.net_io_counters() is not None:
        expected |= NETWORK
    assert set(sample.values) == expected
    assert type(sample.step) is int
    assert all(type(value) is float for value in sample.values.values())
    assert 0.0 <= sample.values["system/cpu/percent"] <= 100.0
    assert 0.0 < sample.values["system/memory/percent"] <= 100.0
    assert sample.values["system/memory/process_rss_mib"] > 1.0
    assert all(sample.values[name] >= 0.0 for name in expected & (DISK | NETWORK))


def test_disk_and_network_count_from_when_the_sampler_started() -> None:
    sampler = SystemSampler(gpus=None)
    before = psutil.net_io_counters()
    sample = sampler.sample()
    if before is None:
        pytest.skip("this machine has no network counters")
    total_sent = before.bytes_sent / 2**20
    assert sample.values["system/network/sent_mib"] < max(total_sent, 1.0)


def test_steps_are_whole_seconds_since_the_start_and_always_rise() -> None:
    times = iter([1000.2, 1001.5, 1001.9, 1000.5, 1010.0])
    sampler = SystemSampler(started_at=1000.0, clock=lambda: next(times), gpus=None)
    steps = [sampler.sample().step for _ in range(5)]
    # 1000.2 -> 0, 1001.5 -> 1, 1001.9 -> 1 taken: 2, a clock that went back -> 3, 1010 -> 10
    assert steps == [0, 1, 2, 3, 10]


def test_without_nvml_there_are_no_gpu_values() -> None:
    assert NvmlGpus.open(module="kittiwake_no_such_nvml") is None
    failing = FakeNvml(fails=True)
    assert NvmlGpus.open(failing) is None
    assert NvmlGpus.open(FakeNvml(count=0)) is None
    sample = SystemSampler(gpus=NvmlGpus.open(failing)).sample()
    assert not any(name.startswith("system/gpu/") for name in sample.values)


def test_each_gpu_reports_what_it_can() -> None:
    nvml = FakeNvml(count=2)
    gpus = NvmlGpus.open(nvml)
    assert gpus is not None
    with SystemSampler(gpus=gpus) as sampler:
        values = sampler.sample().values
    gpu = {name: value for name, value in values.items() if name.startswith("system/gpu/")}
    assert gpu == {
        "system/gpu/0/utilization": 50.0, "system/gpu/0/memory_used_mib": 512.0,
        "system/gpu/0/temperature_c": 60.0, "system/gpu/0/power_w": 250.5,
        "system/gpu/1/utilization": 51.0, "system/gpu/1/memory_used_mib": 1024.0,
        "system/gpu/1/temperature_c": 61.0,  # no power: this one does not report it
    }
    assert nvml.shutdowns == 1  # closed with the sampler, once
    gpus.close()
    assert nvml.shutdowns == 1


async def test_the_loop_emits_rising_steps_until_cancelled() -> None:
    sampler = SystemSampler(gpus=None)
    samples: list[Sample] = []
    got_two = anyio.Event()

    def emit(sample: Sample) -> None:
        samples.append(sample)
        if len(samples) == 2:
            got_two.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sampler.run, emit, 1.0)
            await got_two.wait()
            tasks.cancel_scope.cancel()
    assert len(samples) == 2
    assert 1 <= samples[0].step < samples[1].step


async def test_cancelling_the_loop_stops_it_at_once() -> None:
    sampler = SystemSampler(gpus=None)
    emitted: list[Sample] = []
    began = time.monotonic()
    with anyio.move_on_after(0.1):
        await sampler.run(emitted.append)
    assert time.monotonic() - began < 1.0
    assert emitted == []


async def test_an_async_emit_is_awaited_and_its_error_ends_the_loop() -> None:
    sampler = SystemSampler(gpus=None)

    async def emit(sample: Sample) -> None:
        await anyio.lowlevel.checkpoint()
        raise LookupError(sample.step)

    with anyio.fail_after(10), pytest.raises(LookupError):
        await sampler.run(emit, 1.0)


async def test_sampling_runs_off_the_event_loop() -> None:
    gpus = NvmlGpus.open(FakeNvml(count=1, delay=0.5))  # a slow NVML call
    sampler = SystemSampler(gpus=gpus)
    ticks: list[float] = []
    done = anyio.Event()

    async def tick() -> None:
        while not done.is_set():
            await anyio.sleep(0.01)
            ticks.append(time.monotonic())

    def emit(sample: Sample) -> None:
        done.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            tasks.start_soon(sampler.run, emit, 1.0)
            await done.wait()
            tasks.cancel_scope.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert max(gaps) < 0.4  # NVML took 0.5 s, and the loop went on ticking meanwhile


@pytest.mark.parametrize("interval", [0.5, 0, -1, float("nan"), float("inf"), True, "10"])
async def test_an_interval_under_a_second_is_refused(interval: Any) -> None:
    with pytest.raises(ValidationError, match="system_metrics_interval"):
        await SystemSampler(gpus=None).run(lambda sample: None, interval)


async def test_a_sampler_can_be_made_off_the_event_loop() -> None:
    nvml = FakeNvml(count=1)
    sampler = await SystemSampler.create(started_at=time.time() - 5,
                                         gpus=NvmlGpus.open(nvml))
    with sampler:
        sample = sampler.sample()
    assert sample.step >= 5
    assert "system/gpu/0/utilization" in sample.values
