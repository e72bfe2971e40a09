"""Arrival processes for online (serving) runs.

Poisson arrivals at `rate` requests/s have exponential gaps. `burstiness` is the shape k of a gamma
distribution of the gaps with the same mean 1/rate (as `vllm bench serve --burstiness`): k = 1 is
Poisson, k < 1 burstier, k > 1 more regular. rate = inf (or None) means all arrive at once.
"""

from __future__ import annotations

import math
import random


def arrival_times(n: int, rate: float | None, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Arrival offsets in s from the run's start for n requests (the first arrives at 0)."""
    if n <= 0:
        return []
    if rate is None or math.isinf(rate):
        return [0.0] * n
    if rate <= 0:
        from wattlab.errors import ConfigError

        raise ConfigError(f"request rate must be positive, got {rate}", fix="e.g. --rate 2 (requests/s)")
    if burstiness <= 0:
        from wattlab.errors import ConfigError

        raise ConfigError(f"burstiness must be positive, got {burstiness}", fix="1.0 is Poisson")
    rng = random.Random(seed)
    theta = 1.0 / (rate * burstiness)  # gamma scale so that the mean gap is 1 / rate
    t = 0.0
    times = [0.0]
    for _ in range(n - 1):
        t += rng.gammavariate(burstiness, theta)
        times.append(t)
    return times
