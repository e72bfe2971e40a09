#!/usr/bin/env bash
# Takes the GPU figures of docs/BENCHMARKS.md on an NVIDIA box that has torch, transformers and
# nvidia-ml-py but not wattlab's other dependencies: wheels for duckdb and codecarbon (its data
# files only) are expected in .whl/ (see docs/BENCHMARKS.md). Results go to ${OUT:-gpu-results}.
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 WATTLAB_HOME=/tmp/wattlab-home
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"

echo "== sweep"
python3 -m wattlab.cli sweep benchmarks/gpu_sweep.toml --db "$OUT/gpu.duckdb" 2>&1 | tail -25
python3 -m wattlab.cli --db "$OUT/gpu.duckdb" sql --json \
  "SELECT run_id, quant, batch_size, status, error, tokens_out, duration_s, throughput_tok_s, e2e_p50_s, ttft_p50_s, tpot_p50_s, energy_j, energy_net_j, energy_method, energy_coverage, j_per_token, j_per_token_net, steady_j_per_token, mean_power_w, peak_power_w, util_mean_pct, peak_mem_mib, load_s, load_energy_j FROM runs ORDER BY seq" \
  > "$OUT/gpu_sweep_runs.json"
cat "$OUT/gpu_sweep_runs.json"
python3 -m wattlab.cli --db "$OUT/gpu.duckdb" report --out "$OUT/report" > /dev/null 2>&1 || true

echo "== NVML call CPU cost"
python3 benchmarks/nvml_call_cpu.py > "$OUT/nvml_call_cpu.json" 2>&1; cat "$OUT/nvml_call_cpu.json"

echo "== sampler cost (nvml)"
python3 benchmarks/sampler_cost.py --meters nvml --seconds 30 > "$OUT/sampler_cost_nvml.json" 2>&1
grep -E "pct_of_one_core" "$OUT/sampler_cost_nvml.json"

echo "== gpu tests"
python3 -m pytest -m gpu tests/engines tests/meters -q -p no:cacheprovider 2>&1 | tail -15
