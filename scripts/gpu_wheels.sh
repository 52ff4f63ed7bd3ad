#!/usr/bin/env bash
# Download, here, the wheels a lent GPU machine lacks for the codec recipe (its image has torch, numpy, scipy, rich,
# typer, safetensors, einops, sympy, but not soundfile, soxr, pyloudnorm or vector-quantize-pytorch and their needs),
# for its Python 3.12 on x86-64, at the versions this venv runs, into .whl (git-ignored through
# .git/info/exclude). scripts/gpu_train.sh installs them there when .whl travels: name .whl in the call's carry.
#   bash scripts/gpu_wheels.sh        # about 2 MiB
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/python -m pip}
mkdir -p .git/info .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
pkgs="soundfile cffi pycparser soxr pyloudnorm vector-quantize-pytorch einx frozendict loguru torch-einops-utils"
for p in $pkgs; do
  v=$($PIP show "$p" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$v" ] || { echo "$p is not installed here: make venv first" >&2; exit 1; }
  $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$p==$v"
done
ls -la .whl
du -sh .whl
