#!/usr/bin/env bash
# The torch backend on an NVIDIA GPU: parity against CPU fp32 and speed of bore_depth, svr and
# semi_smd in fp32 and fp16 (PyTorch only: no TensorRT, no network). Logic: tools/gpu_check.py.
#
#   bash tools/gpu_check.sh                        # cuda: default size, 384x640, 448x800, both layouts
#   bash tools/gpu_check.sh --device cuda:1
#   bash tools/gpu_check.sh --device cpu --quick   # the same on the CPU (fp32, bf16 where native)
#
# Uses the project's venv when there is one (or the active one), else python3 with this checkout
# on PYTHONPATH. Prints a parity table and a speed table (Markdown); exit 0 when every parity
# check passed, 1 when one failed, 2 when the device is unusable (e.g. no CUDA device).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=python3
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
    python="$VIRTUAL_ENV/bin/python"
elif [[ -x "${BORE_VENV:-$root/.venv}/bin/python" ]]; then
    python="${BORE_VENV:-$root/.venv}/bin/python"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$root/tools/gpu_check.py" "$@"
