"""The live model (sessions/live.py) driven by random interleavings of spool writes and polls.

A simulated session writes samples, marks and runner events to a real spool, in true time order
except that each event line may land a few sample lines late (two files, two writers); a tail polls
at random points. Whatever the interleaving:

- speed (tokens/s) is never negative, and never above the fastest rate tokens were generated at;
- run energy never decreases within a run, restarts at each run's start, and matches the energy
  actually drawn since that start (load and warmup included) by the devices the run uses;
- the ETA exists once the measured window has progress, and falls as time passes at a constant pace.
"""

from __future__ import annotations

import itertools
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattlab.sessions.live import LiveTail
from wattlab.sessions.spool import Spool

NS = 1_000_000_000
DT = NS // 10  # one sample every 100 ms
T0 = 1_000 * NS
DOMAINS = [
    {"id": "gpu0", "kind": "gpu", "meter": "nvml", "label": "GPU 0", "device": "gpu:0", "has_counter": True},
    {"id": "cpu-package-0", "kind": "cpu", "meter": "rapl", "label": "CPU", "device": "cpu"},
]
# Energy error allowed against the truth: the run's start is interpolated between two readings
# (at most |dP| x DT / 8 per domain, P <= 400 W), far below what losing the load or warmup costs.
TOLERANCE_J = 12.0


@dataclass(frozen=True)
class RunPlan:
    load: int  # samples of each phase
    warm: int
    measured: int
    cool: int
    warm_rate: int  # tokens per second (multiples of 10: whole tokens at each 100 ms sample)
    rate: int
    every: int  # a progress event every this many samples


@dataclass
class Truth:
    """What the simulated session really did, up to the lines written so far."""

    energy: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # domain -> (t, cumulative J)
    t_last: int | None = None
    current: str | None = None
    run_t0: int = 0
    devices_known: bool = False
    measured_tokens: int = 0

    def cumulative(self, domain: str, t: int) -> float:
        pts = self.energy[domain]
        for (ta, ea), (tb, eb) in itertools.pairwise(pts):
            if ta <= t <= tb:
                return ea + (eb - ea) * (t - ta) / (tb - ta)
        return pts[-1][1] if t > pts[-1][0] else pts[0][1]

    def run_energy(self) -> float:
        if self.t_last is None or self.t_last <= self.run_t0:
            return 0.0
        domains = ["cpu-package-0"] + (["gpu0"] if self.devices_known else [])
        return sum(self.cumulative(d, self.t_last) - self.cumulative(d, self.run_t0) for d in domains)


Op = tuple[str, dict[str, Any], float | None]  # ("timeline" | event kind, item, true cumulative J)


def session_script(plans: list[RunPlan], seed: int, named_windows: bool) -> list[Op]:
    """Every line the session writes, in true time order; samples carry the domain's true energy."""
    rng = random.Random(seed)
    ops: list[Op] = [
        ("session_start", {"session": {"session_id": "s", "runs_planned": len(plans)}}, None),
        ("idle", {"idle_w": {}, "seconds": 0}, None),
    ]
    t = T0
    energy = {"gpu0": 0.0, "cpu-package-0": 0.0}
    power = {"gpu0": 60.0, "cpu-package-0": 20.0}

    def sample() -> None:
        nonlocal t
        t += DT
        for did, lo, hi in (("gpu0", 60.0, 400.0), ("cpu-package-0", 10.0, 60.0)):
            p = rng.uniform(lo, hi)
            energy[did] += (p + power[did]) / 2 * DT / NS
            power[did] = p
            item: dict[str, Any] = {"t": t, "d": did, "p": p}
            if did == "gpu0":
                item["e"] = energy[did]  # a counter read with every power reading
            ops.append(("timeline", item, energy[did]))

    sample()
    for seq, plan in enumerate(plans, 1):
        run_id = f"s-{seq:03d}"
        planned = plan.rate * plan.measured // 10
        row = {"requests": 1, "output_tokens": planned}
        start = {"run_id": run_id, "seq": seq, "total": len(plans), "label": run_id, "row": row, "t": t}
        ops.append(("run_start", start, None))
        for _ in range(plan.load):
            sample()
        ops.append(("run_loaded", {"run_id": run_id, "devices": ["gpu:0"]}, None))
        for window, n, rate in (("warmup", plan.warm, plan.warm_rate), ("run", plan.measured, plan.rate)):
            w0 = t
            ops.append(("timeline", {"t": w0, "m": f"{window}_start", "r": run_id}, None))
            for i in range(1, n + 1):
                sample()
                if i % plan.every == 0 or i == n:
                    named = {"window": window, "window_t0": w0} if named_windows else {}
                    tokens = rate * (t - w0) // NS
                    ops.append(("progress", {"run_id": run_id, "tokens": tokens, "t": t, **named}, None))
            ops.append(("timeline", {"t": t, "m": f"{window}_end", "r": run_id}, None))
        ops.append(("run_end", {"result": {"run_id": run_id, "status": "finished"}, "t": t}, None))
        for _ in range(plan.cool):
            sample()
    ops.append(("session_end", {"status": "finished"}, None))
    return ops


def interleave(ops: list[Op], rng: random.Random) -> list[Op]:
    """Each event line lands up to 3 lines late; each file keeps its own order."""
    keyed = []
    last_event = -1.0
    for i, op in enumerate(ops):
        if op[0] == "timeline":
            keyed.append((float(i), op))
        else:
            last_event = max(last_event, i + rng.choice((0, 0, 1, 2, 3)) + 0.5)
            keyed.append((last_event, op))
    keyed.sort(key=lambda k: k[0])
    return [op for _, op in keyed]


plans = st.builds(
    RunPlan,
    load=st.integers(10, 40),
    warm=st.integers(2, 20),
    measured=st.integers(3, 40),
    cool=st.integers(0, 10),
    warm_rate=st.integers(1, 60).map(lambda x: x * 10),
    rate=st.integers(1, 60).map(lambda x: x * 10),
    every=st.integers(1, 3),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(plans, min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    poll_share=st.floats(0.05, 1.0),
    named_windows=st.booleans(),
)
def test_live_figures_under_random_interleavings(
    plans: list[RunPlan], seed: int, poll_share: float, named_windows: bool
) -> None:
    rng = random.Random(seed)
    ops = interleave(session_script(plans, seed, named_windows), rng)
    fastest = max(max(p.rate, p.warm_rate) for p in plans)
    with tempfile.TemporaryDirectory() as root:
        spool = Spool("s", Path(root))
        spool.create({"session_id": "s", "runs_planned": len(plans)})
        spool.timeline_item({"domains": DOMAINS})
        tail = LiveTail(Spool("s", Path(root)))
        truth = Truth(energy={d["id"]: [] for d in DOMAINS})
        prev: tuple[Any, int] | None = None  # the previous snapshot, and measured tokens written then
        for n, (kind, item, true_j) in enumerate(ops, 1):
            if kind == "timeline":
                spool.timeline_item(item)
                if true_j is not None:
                    truth.t_last = item["t"] if truth.t_last is None else max(truth.t_last, item["t"])
                    truth.energy[item["d"]].append((item["t"], true_j))
            else:
                spool.event(kind, **item)
                if kind == "run_start":
                    truth.current, truth.run_t0 = item["run_id"], item["t"]
                    truth.devices_known, truth.measured_tokens = False, 0
                elif kind == "run_loaded":
                    truth.devices_known = True
                elif kind == "progress" and item.get("window") == "run":
                    truth.measured_tokens = item["tokens"]
                elif kind == "run_end":
                    truth.current = None
            if rng.random() > poll_share and n < len(ops):
                continue
            snap = tail.poll()
            check(snap, prev, truth, fastest, named_windows)
            prev = (snap, truth.measured_tokens)
        spool.close()


def check(snap: Any, before: tuple[Any, int] | None, truth: Truth, fastest: int, named_windows: bool) -> None:
    prev, prev_measured = before or (None, 0)
    assert (snap.current or {}).get("run_id") == truth.current
    assert snap.tokens_per_s is None or 0.0 <= snap.tokens_per_s <= fastest * (1 + 1e-9)
    if truth.current is None:
        assert snap.run_energy_j is None
        return
    same_run = prev is not None and (prev.current or {}).get("run_id") == truth.current
    expected = truth.run_energy()
    assert snap.run_energy_j is not None
    assert abs(snap.run_energy_j - expected) <= TOLERANCE_J, (snap.run_energy_j, expected)
    if same_run:
        assert snap.run_energy_j >= prev.run_energy_j  # monotone within the run
    if not named_windows or snap.status != "running":
        return
    if truth.measured_tokens > 0:
        assert snap.eta_s is not None and snap.eta_s >= 0
        if same_run and prev_measured > 0:  # the same measured window, at one constant pace
            assert prev.eta_s is not None and snap.eta_s <= prev.eta_s + 1e-6, (prev.eta_s, snap.eta_s)


def write_all(root: Path, ops: list[Op], upto: int | None = None) -> Spool:
    spool = Spool("s", root)
    spool.create({"session_id": "s", "runs_planned": 2})
    spool.timeline_item({"domains": DOMAINS})
    for kind, item, _ in ops[:upto]:
        spool.timeline_item(item) if kind == "timeline" else spool.event(kind, **item)
    return spool


def test_a_fresh_tail_shows_what_a_tail_that_followed_live_showed(tmp_path: Path) -> None:
    """Re-attaching after a dropped SSH link reads the spool at once: same run energy, speed, ETA."""
    plan = RunPlan(load=25, warm=10, measured=30, cool=5, warm_rate=100, rate=300, every=2)
    ops = session_script([plan, plan], seed=7, named_windows=True)
    middle = next(i for i, op in enumerate(ops) if op[0] == "run_start" and op[1]["seq"] == 2) + 120
    followed = tmp_path / "followed"
    live = LiveTail(write_all(followed, []))
    spool = Spool("s", followed)
    spool.open()
    for kind, item, _ in ops[:middle]:
        spool.timeline_item(item) if kind == "timeline" else spool.event(kind, **item)
        live.poll()
    snap = live.poll()
    fresh = LiveTail(write_all(tmp_path / "fresh", ops, middle)).poll()
    assert snap.current and fresh.current and snap.current["seq"] == fresh.current["seq"] == 2
    assert fresh.run_energy_j is not None and snap.run_energy_j is not None
    assert abs(fresh.run_energy_j - snap.run_energy_j) < 1e-6
    # ...and that is the energy both devices drew since run 2 started, its load and warmup included.
    t0 = ops[middle - 120][1]["t"]
    expected = 0.0
    for domain in ("gpu0", "cpu-package-0"):
        drawn = [(item["t"], j) for _, item, j in ops[:middle] if j is not None and item["d"] == domain]
        expected += drawn[-1][1] - next(j for t, j in drawn if t == t0)
    assert abs(snap.run_energy_j - expected) < 1e-6
    assert fresh.tokens_per_s == snap.tokens_per_s and fresh.eta_s == snap.eta_s


def test_speed_falls_toward_zero_when_tokens_stop_and_never_goes_negative(tmp_path: Path) -> None:
    spool = write_all(tmp_path, [])
    tail = LiveTail(Spool("s", tmp_path))
    row = {"requests": 1, "output_tokens": 10_000}
    spool.event("run_start", run_id="s-001", seq=1, total=1, label="r", row=row, t=T0)
    for i in range(1, 31):  # 3 s at 200 tok/s
        spool.event("progress", run_id="s-001", tokens=20 * i, t=T0 + i * DT, window="run", window_t0=T0)
    speeds = []
    for i in range(0, 101):  # then only power readings, for 10 s
        spool.timeline_item({"t": T0 + 30 * DT + i * DT, "d": "cpu-package-0", "p": 20.0})
        speeds.append(tail.poll().tokens_per_s)
    assert speeds[0] == 200.0
    assert all(s is not None and s >= 0 for s in speeds)
    assert speeds[-1] < 200.0 / 2 and speeds == sorted(speeds, reverse=True)
