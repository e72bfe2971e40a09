#!/usr/bin/env bash
# The GPU study in one call (at most 9 minutes on one H200): the sweep of benchmarks/gpu_study.toml
# with an outside NVML log beside it, the reconciliation of every run's energy with that log, the
# report, and wattlab next to Zeus and codecarbon window by window.
#
#   export PYTHONPATH=/tmp/lcpsite:/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0   (../shared/gpu/README.md)
#   OUT=$OUT bash benchmarks/gpu_study.sh
#
# Writes 7 files under $OUT (the lent box returns at most 8): gpu_study.duckdb (the sweep, a few MB),
# nvml_log.jsonl (the outside log), reconcile.json, report.md, peers.json, peers_nvml_log.jsonl and
# study.log (everything printed). GPUS (default 0) picks the NVML indices logged and metered.
set -uo pipefail
OUT=${OUT:-gpu-study}
GPUS=${GPUS:-0}
PY=${PYTHON:-python3}
SWEEP_TIMEOUT_S=${SWEEP_TIMEOUT_S:-400}  # leaves ~2 minutes of the 9 for the rest
STUDY=${STUDY:-benchmarks/gpu_study.toml}  # benchmarks/gpu_study_llamacpp.toml: the llama.cpp half
PEERS=${PEERS:-1}  # 0: skip the Zeus/codecarbon side-by-side
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WATTLAB_HOME=${WATTLAB_HOME:-/tmp/wattlab-home}
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0}
exec > >(tee -a "$OUT/study.log") 2>&1
SECONDS=0
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm --format=csv
$PY -c "import wattlab, duckdb, pynvml; print('wattlab', wattlab.__version__)" || exit 1

echo "== 1. outside NVML logger (10 Hz, GPUs $GPUS)"
$PY benchmarks/nvml_logger.py --out "$OUT/nvml_log.jsonl" --hz 10 --gpus "$GPUS" &
LOGGER=$!
sleep 1

echo "== 2. sweep (stopped with SIGINT after ${SWEEP_TIMEOUT_S}s; committed runs stay, the rest is resumable)"
timeout -s INT -k 30 "$SWEEP_TIMEOUT_S" $PY -m wattlab sweep "$STUDY" --db "$OUT/gpu_study.duckdb"
echo "sweep exit status $? at ${SECONDS}s"

echo "== 3. stop the logger"
kill -TERM "$LOGGER"
wait "$LOGGER"
wc -l "$OUT/nvml_log.jsonl"

echo "== 4. reconcile and report (${SECONDS}s)"
$PY benchmarks/reconcile.py --db "$OUT/gpu_study.duckdb" --log "$OUT/nvml_log.jsonl" \
  --windows measured,load,warmup --json "$OUT/reconcile.json"
echo "reconcile exit status $? (0: every window >= 1 s within 1%)"
$PY -m wattlab sql --json --db "$OUT/gpu_study.duckdb" \
  "SELECT seq, engine, model, quant, batch_size AS bs, mode, rate, status, round(duration_s, 2) AS s,
          round(throughput_tok_s) AS tok_s, round(j_per_token, 4) AS j_tok, energy_method AS method,
          round(ttft_p50_s, 3) AS ttft, round(tpot_p50_s, 4) AS tpot, round(load_s, 1) AS load_s,
          json_extract_string(spec_json, '$.options') AS options, error
   FROM runs ORDER BY seq"
rm -rf /tmp/gpu-study-report
$PY -m wattlab report --db "$OUT/gpu_study.duckdb" --out /tmp/gpu-study-report > /dev/null \
  && cp /tmp/gpu-study-report/report.md "$OUT/report.md"
ls -la "$OUT"

[ "$PEERS" = 1 ] || { echo "done in ${SECONDS}s"; exit 0; }
echo "== 5. wattlab, Zeus, codecarbon and the outside log, window by window (${SECONDS}s)"
timeout -k 10 100 $PY benchmarks/peers_side_by_side.py --gpus "${GPUS%%,*}" --lengths 0.5,2,10 \
  --intensities idle,low,high --repeats 1 --gap 0.5 --json "$OUT/peers.json"
echo "peers exit status $?; done in ${SECONDS}s"
