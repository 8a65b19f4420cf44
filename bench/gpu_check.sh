#!/usr/bin/env bash
# Issue 14's GPU check, for a machine with an NVIDIA GPU (never needed by the tests): ONE JSON line.
#
#   bash bench/gpu_check.sh [extra arguments of bench/gpu_check.py]
#
# 1. makes a virtual environment with setup.py's dependencies and its `gpu` extra (spconv-cu118 in place of
#    the CPU spconv, tensorrt), and onnxruntime-gpu in place of onnxruntime (the CUDA and TensorRT execution
#    providers; same module name, so one replaces the other). As with the Makefile's environment, nothing
#    of the checkout is installed in it: this checkout runs from its tree (PYTHONPATH). $VENV, default
#    ~/.cache/perception_nodes/venv-gpu, is reused when it exists (GPU_CHECK_REINSTALL=1 rebuilds it);
# 2. builds the TensorRT engine of the deployable student (StudentConfig.deployable(), random weights)
#    with `ovp export --fp16`, to show the build works from the command line;
# 3. runs bench/gpu_check.py: TensorRT engine latency at 120k points (target < 10 ms), ONNX Runtime
#    CUDA / TensorRT EP latency and label parity with ONNX Runtime CPU (target >= 99.9 % equal), MaskCLIP
#    ViT-B-16 fp16 latency for 6 cameras of 900x1600 resized to teacher.input_size, and `ovp replay`
#    frames/s with runtime.device cuda (student and teacher labellers) — printed as one JSON line, last.
# Put the numbers in docs/student.md ("GPU") with the date and the GPU's name.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$HOME/.cache/perception_nodes/venv-gpu}
OUT=${OUT:-$(mktemp -d -t ovp-gpu-check-XXXXXX)}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 \
  || echo "warning: nvidia-smi not found; the CUDA rows will report errors" >&2

if [[ ! -x "$VENV/bin/python" || "${GPU_CHECK_REINSTALL:-0}" == 1 ]]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --upgrade pip >&2
  # setup.py's install_requires and gpu extra (setup() replaced by a printer, as the Makefile does),
  # without the CPU spconv (spconv-cu118 installs the same module) and the CPU onnxruntime (below)
  "$PYTHON" - > "$VENV/requirements-gpu.txt" <<'PYEOF'
import runpy, setuptools
def show(**kw):
    print('\n'.join(r for r in kw['install_requires'] + kw['extras_require']['gpu']
                    if not r.startswith(('spconv==', 'onnxruntime=='))))
setuptools.setup = show
runpy.run_path('setup.py')
PYEOF
  "$VENV/bin/python" -m pip install -r "$VENV/requirements-gpu.txt" >&2
  # ONNX Runtime with the CUDA / TensorRT execution providers, the version setup.py pins for the CPU one
  ORT=$(grep -o "'onnxruntime==[0-9.]*'" setup.py | tr -d "'" | cut -d= -f3)
  "$VENV/bin/python" -m pip install "onnxruntime-gpu==$ORT" >&2
fi
PY="$VENV/bin/python"
export PYTHONPATH="$REPO"

"$PY" - <<'PYEOF' >&2
import torch, onnxruntime
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')
print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())
PYEOF

# the deployable student's engine, built from the command line (gpu_check.py builds its own copy too)
"$PY" - "$OUT" <<'PYEOF' >&2
import sys, torch
from pathlib import Path
from perception_nodes.student.checkpoint import save_checkpoint
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.model import build_student
torch.manual_seed(0)
save_checkpoint(Path(sys.argv[1]) / 'deployable', build_student(StudentConfig.deployable()))
PYEOF
start=$(date +%s)
"$PY" -m perception_nodes.cli.main export --checkpoint "$OUT/deployable" --onnx "$OUT/deployable.onnx" \
  --engine "$OUT/deployable.engine" --fp16 >&2
echo "engine built in $(( $(date +%s) - start )) s: $OUT/deployable.engine" >&2

"$PY" bench/gpu_check.py --device cuda "$@"
