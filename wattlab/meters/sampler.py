"""Background samplers: one thread per meter, feeding the session timeline.

Power and telemetry are read fast (default 10 Hz); energy counters sparingly (default 2 Hz, since
an NVML counter read costs ~4 ms) and at every mark, so window edges sit next to a counter read.
Sampling never happens on an engine's thread, and the live view's refresh rate is separate.
"""

from __future__ import annotations

import threading
import time

from wattlab.meters.base import Meter, Sample, now_ns
from wattlab.meters.timeline import Timeline


class _MeterThread(threading.Thread):
    def __init__(self, meter: Meter, timeline: Timeline, power_period_s: float, counter_period_s: float):
        super().__init__(name=f"wattlab-sampler-{meter.name}", daemon=True)
        self.meter = meter
        self.timeline = timeline
        self.power_period_s = power_period_s
        self.counter_period_s = counter_period_s
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.counter_requested = threading.Event()
        self.counter_done = threading.Event()
        self.cpu_seconds = 0.0  # CPU time this thread spent, for the sampler-cost benchmark
        self.power_reads = 0
        self.counter_reads = 0
        self.errors = 0

    def _safe(self, read: str) -> list[Sample]:
        try:
            return getattr(self.meter, read)()
        except Exception as exc:  # a meter must not kill the sampler: the reading goes missing
            self.errors += 1
            t = now_ns()
            return [
                Sample(t_ns=t, domain=d.id, error=f"{type(exc).__name__}: {exc}") for d in self.meter.domains
            ]

    def _read_counters(self) -> None:
        self.timeline.add_many(self._safe("read_counters"))
        self.counter_reads += 1

    def run(self) -> None:
        cpu0 = time.thread_time()
        has_counters = self.meter.HAS_COUNTERS
        next_power = time.monotonic()
        next_counter = next_power
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                if has_counters and (now >= next_counter or self.counter_requested.is_set()):
                    requested = self.counter_requested.is_set()
                    self.counter_requested.clear()
                    self._read_counters()
                    if requested:
                        self.counter_done.set()
                    if now >= next_counter:
                        next_counter = max(next_counter + self.counter_period_s, now)
                if now >= next_power:
                    self.timeline.add_many(self._safe("read_power"))
                    self.power_reads += 1
                    # Skip missed ticks instead of bursting to catch up.
                    next_power = max(next_power + self.power_period_s, now)
                deadline = min(next_power, next_counter) if has_counters else next_power
                timeout = deadline - time.monotonic()
                if timeout > 0:
                    self.wake.wait(timeout)
                    self.wake.clear()
            if has_counters:
                self._read_counters()  # a closing read so the last window is bracketed
        finally:
            self.cpu_seconds = time.thread_time() - cpu0


class Sampler:
    """Runs every meter on its own thread. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        meters: list[Meter],
        timeline: Timeline,
        *,
        power_hz: float = 10.0,
        counter_hz: float = 2.0,
    ) -> None:
        if power_hz <= 0 or counter_hz <= 0:
            from wattlab.errors import ConfigError

            raise ConfigError(
                f"sampling rates must be positive (power {power_hz} Hz, counters {counter_hz} Hz)",
                fix="use e.g. --power-hz 10 --counter-hz 2",
            )
        self.meters = meters
        self.timeline = timeline
        timeline.power_period_s = 1.0 / power_hz
        timeline.counter_period_s = 1.0 / counter_hz
        for m in meters:
            timeline.add_domains(m.domains)
        self._threads = [_MeterThread(m, timeline, 1.0 / power_hz, 1.0 / counter_hz) for m in meters]
        self._started = False

    def start(self) -> Sampler:
        for t in self._threads:
            t.start()
        self._started = True
        return self

    def read_counters_now(self, timeout_s: float = 0.5) -> None:
        """Ask every counter meter for a reading now (at a mark) and wait briefly for it."""
        waiting = []
        for t in self._threads:
            if t.meter.HAS_COUNTERS and t.is_alive():
                t.counter_done.clear()
                t.counter_requested.set()
                t.wake.set()
                waiting.append(t)
        deadline = time.monotonic() + timeout_s
        for t in waiting:
            t.counter_done.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        for t in self._threads:
            t.stopping.set()
            t.wake.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5)

    @property
    def cpu_seconds(self) -> float:
        return sum(t.cpu_seconds for t in self._threads)

    def stats(self) -> dict[str, dict[str, float]]:
        return {
            t.meter.name: {
                "power_reads": t.power_reads,
                "counter_reads": t.counter_reads,
                "errors": t.errors,
                "cpu_seconds": t.cpu_seconds,
            }
            for t in self._threads
        }

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
