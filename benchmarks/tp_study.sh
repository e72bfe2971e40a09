#!/usr/bin/env bash
# The tensor-parallel study, one block (engine load) per call of the lent box: a thin wrapper around
# benchmarks/gpu_study.sh (outside NVML log of every GPU, sweep, reconcile, report; no peers).
#
#   export PYTHONPATH=/tmp/lcpsite:/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0   (../shared/gpu/README.md)
#   PART=list bash benchmarks/tp_study.sh                  # the blocks, numbered where they fit
#   PART=1 OUT=$OUT bash benchmarks/tp_study.sh            # 4- or 8-GPU box: block 1 of tp_study.toml
#   PART=3,4 STUDY=benchmarks/tp_study_check.toml OUT=$OUT bash benchmarks/tp_study.sh   # 8B, TP2
#
# The blocks that fit are those with TP x PP <= the GPUs nvidia-smi lists (NGPU overrides): a 4-GPU
# box numbers the three TP4 blocks 1-3, an 8-GPU box all eight (benchmarks/tp_study_part.py). A 70B
# block is ~2.5 min of load (worker start, NCCL, dummy weights, torch.compile, CUDA graphs; the 8B
# took 68-75 s) and ~2 min of runs, so one block per call fits the 10 minutes with room for a cold
# compile; two blocks (PART=1,2) only if the first call's load_s came out under ~120 s.
# Writes 6 files under $OUT: study.toml (the part run), gpu_study.duckdb, nvml_log.jsonl,
# reconcile.json, report.md, study.log.
set -uo pipefail
OUT=${OUT:-tp-study}
PY=${PYTHON:-python3}
STUDY=${STUDY:-benchmarks/tp_study.toml}
PART=${PART:-1}
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
[ "$NGPU" -ge 1 ] || { echo "no GPU visible (nvidia-smi -L); set NGPU to list the blocks anyway"; [ "$PART" = list ] || exit 1; NGPU=${NGPU:-0}; }
$PY benchmarks/tp_study_part.py "$STUDY" --gpus "$NGPU" --list
[ "$PART" = list ] && exit 0
mkdir -p "$OUT"
$PY benchmarks/tp_study_part.py "$STUDY" --gpus "$NGPU" --part "$PART" --out "$OUT/study.toml" || exit 1
export STUDY="$OUT/study.toml" GPUS=${GPUS:-$(seq -s, 0 $((NGPU - 1)))} PEERS=0 OUT
export SWEEP_TIMEOUT_S=${SWEEP_TIMEOUT_S:-470}  # + ~60 s of logger, reconcile and report < 10 min
exec bash benchmarks/gpu_study.sh
