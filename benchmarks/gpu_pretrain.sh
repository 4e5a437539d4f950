#!/usr/bin/env bash
# One prepared single-GPU run (H200-class, 16 cores): ELECTRA-Small from scratch in bf16 for ~7 minutes, with the
# throughput benchmark beside it, held-out detection, and the checkpoint, figures and curves written to OUT.
#
#   here, once:  .venv/bin/python benchmarks/gpu_pretrain.py prepare          (writes runs/gpu-data, ~31 MB)
#   there:       bash benchmarks/gpu_pretrain.sh OUT                          (carry runs/gpu-data)
#   on a CPU:    bash benchmarks/gpu_pretrain.sh OUT --dry-run                (tiny, 20 steps: the script tested)
#   back here:   .venv/bin/python benchmarks/gpu_pretrain.py unpack OUT runs/gpu-small
#
# It runs on the machine's own Python (PYTHON, default python3) from source, with no package index: torch (CUDA),
# transformers, tokenizers, safetensors and tqdm are expected; tensorboard and matplotlib are used when present.
# Extra arguments go to `gpu_pretrain.py run` (e.g. --minutes 6 --data DIR).
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "usage: bash benchmarks/gpu_pretrain.sh OUT [--dry-run] [--minutes M] [--data DIR]" >&2
    exit 2
fi
OUT=$1
shift
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1048576} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-268435456}
"${PYTHON:-python3}" benchmarks/gpu_pretrain.py run "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
