#!/bin/bash
# The prepared device check (issue 21): at most 8 minutes on one GPU; figures printed and in JSON.
#
#   bash bench/gpu_check.sh [WORKSPACE] [--quick] [--device cpu]
#
# Where no GPU is lent, `--quick --device cpu` runs every part on the CPU in about a minute
# (tests/test_gpu_check.py does). What each part measures: bench/gpu_check.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
workspace=/tmp/ecgsearch-gpu-check
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then workspace=$1; shift; fi
python=${PYTHON:-python}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode --format=csv
  # K workers on one GPU run side by side only under CUDA MPS; without it they take turns.
  if echo get_server_list | nvidia-cuda-mps-control >/dev/null 2>&1; then echo "CUDA MPS: running"
  else echo "CUDA MPS: not running (workers on one GPU time-slice)"; fi
else
  echo "no nvidia-smi: no GPU here"
fi
exec "$python" "$here/gpu_check.py" --workspace "$workspace" "$@"
