"""Latency, steady-state and attribution arithmetic on hand-made completions (exact answers)."""

from __future__ import annotations

import pytest

from wattlab.engines.base import Completion
from wattlab.meters.base import Domain, Sample
from wattlab.meters.timeline import Timeline
from wattlab.sessions import figures

S = 1_000_000_000


def _c(i: int, start: float, first: float, end: float, n: int) -> Completion:
    """A request arriving at `start` s, first token at `first`, n tokens evenly to `end`."""
    step = (end - first) / (n - 1) if n > 1 else 0.0
    times = [int((first + k * step) * S) for k in range(n)]
    return Completion(
        id=i,
        input_tokens=10,
        output_ids=list(range(n)),
        arrival_ns=int(start * S),
        start_ns=int(start * S),
        first_token_ns=times[0],
        end_ns=int(end * S),
        token_ns=times,
    )


def test_percentile_interpolates_linearly() -> None:
    assert figures.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert figures.percentile([5.0], 99) == 5.0
    assert figures.percentile([], 50) is None
    assert figures.percentile([0.0, 10.0], 90) == pytest.approx(9.0)


def test_latency_figures_follow_vllm_bench_definitions() -> None:
    cs = [_c(0, 0.0, 0.5, 2.5, 5), _c(1, 0.0, 1.0, 3.0, 3)]
    f = figures.latency_figures(cs, 0, 4 * S)
    assert f["ttft_p50_s"] == pytest.approx(0.75)
    # TPOT = (E2E - TTFT) / (n - 1): (2.5-0.5)/4 = 0.5 and (3-1)/2 = 1.0
    assert f["tpot_mean_s"] == pytest.approx(0.75)
    assert f["e2e_p50_s"] == pytest.approx(2.75)
    assert f["tokens_out"] == 8 and f["tokens_in"] == 20
    assert f["throughput_tok_s"] == pytest.approx(2.0)
    assert f["itl_p50_s"] == pytest.approx(0.5)  # four gaps of 0.5 s and two of 1.0 s


def test_steady_state_is_when_the_batch_is_full() -> None:
    # Three requests: all three decode together from t=1.0 (last first token) to t=2.0 (first end).
    cs = [_c(0, 0, 0.2, 2.0, 10), _c(1, 0, 0.6, 3.0, 10), _c(2, 0, 1.0, 2.5, 10)]
    assert figures.steady_interval(cs) == (1 * S, 2 * S)


def test_steady_state_spans_every_static_batch() -> None:
    # Two batches of two: full from 0.3 s (batch 1 filled) until the last drain begins at 2.0 s.
    cs = [_c(0, 0, 0.2, 1.0, 5), _c(1, 0, 0.3, 1.0, 5), _c(2, 1.0, 1.2, 2.0, 5), _c(3, 1.0, 1.3, 2.2, 5)]
    assert figures.steady_interval(cs) == (int(0.3 * S), 2 * S)
    # Sequential batch-1 requests: steady from the first token to the last request's end.
    seq = [_c(i, i, i + 0.1, i + 0.9, 5) for i in range(3)]
    assert figures.steady_interval(seq) == (int(0.1 * S), int(2.9 * S))


def test_prefill_and_decode_never_overlap_under_continuous_batching() -> None:
    # Request 1 joins while request 0 decodes: its prefill (1.0-1.4 s) is cut out of decode.
    cs = [_c(0, 0, 0.2, 2.0, 5), _c(1, 1.0, 1.4, 3.0, 5)]
    prefill, decode = figures.prefill_decode_intervals(cs)
    assert prefill == [(0, int(0.2 * S)), (1 * S, int(1.4 * S))]
    assert decode == [(int(0.2 * S), 1 * S), (int(1.4 * S), 3 * S)]


def test_prefill_and_decode_windows_per_static_batch() -> None:
    batch1 = [_c(0, 0, 0.2, 1.0, 4), _c(1, 0, 0.3, 1.2, 4)]
    batch2 = [_c(2, 1.2, 1.5, 2.0, 4)]
    prefill, decode = figures.prefill_decode_intervals(batch1 + batch2)
    assert prefill == [(0, int(0.3 * S)), (int(1.2 * S), int(1.5 * S))]
    assert decode == [(int(0.3 * S), int(1.2 * S)), (int(1.5 * S), 2 * S)]


def test_attribution_keeps_only_the_devices_a_run_used() -> None:
    doms = [
        Domain("gpu0", "gpu", "nvml", "GPU0", "gpu:0", has_counter=True),
        Domain("gpu1", "gpu", "nvml", "GPU1", "gpu:1", has_counter=True),
        Domain("cpu-package-0", "cpu", "rapl", "pkg", "cpu", has_counter=True),
        Domain("soc-total", "soc", "jetson", "board", "soc"),
        Domain("rail-VDD_GPU_SOC", "rail", "jetson", "rail", "soc", parent="soc-total"),
    ]
    ids = [d.id for d in figures.attributed_domains(doms, ["gpu:1"])]
    assert ids == ["gpu1", "cpu-package-0", "soc-total"]
    assert [d.id for d in figures.attributed_domains(doms, ["cpu"])] == ["cpu-package-0"]


def test_window_rows_sum_intervals_and_subtract_idle() -> None:
    d = Domain("gpu0", "gpu", "fake", "GPU", "gpu:0")
    tl = Timeline([d])
    for k in range(0, 41):  # 100 W flat, a reading every 0.1 s for 4 s
        tl.add(Sample(t_ns=k * S // 10, domain="gpu0", power_w=100.0))
    rows = figures.windows_energy(tl, [d], "decode", [(0, 1 * S), (2 * S, 3 * S)], {"gpu0": 40.0})
    assert rows[0]["energy_j"] == pytest.approx(200.0)
    assert rows[0]["net_energy_j"] == pytest.approx(120.0)
    assert rows[0]["method"] == "integrated"
    total = figures.total_of(rows, "decode")
    assert total["energy_j"] == pytest.approx(200.0) and total["coverage"] == 1.0


def test_an_estimated_cpu_does_not_relabel_a_measured_gpu_total() -> None:
    rows = [
        {
            "window_name": "measured",
            "domain_id": "gpu0",
            "energy_j": 100.0,
            "net_energy_j": 60.0,
            "method": "counter",
            "coverage": 1.0,
        },
        {
            "window_name": "measured",
            "domain_id": "cpu-estimate",
            "energy_j": 30.0,
            "net_energy_j": 5.0,
            "method": "estimated",
            "coverage": 1.0,
        },
    ]
    total = figures.total_of(rows, "measured")
    assert (total["energy_j"], total["method"], total["domains"]) == (100.0, "counter", "gpu0")
    only_estimated = figures.total_of(rows[1:], "measured")
    assert (only_estimated["energy_j"], only_estimated["method"]) == (30.0, "estimated")
