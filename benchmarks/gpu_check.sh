#!/usr/bin/env bash
# GPU check: one prepared run on a machine with an NVIDIA GPU, JAX, no
# TensorFlow and no network. Installs Keras (and whichever of its small
# dependencies are missing) from wheels carried in .whl/, then runs
# benchmarks/gpu_check.py under KERAS_BACKEND=jax. Extra arguments go to the
# Python script (e.g. --quick, --models cnn).
#
# Getting the wheels, once, on a machine with pip and a network (for the GPU
# machine's Python, 3.12 here; see docs/scale.md):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 \
#       --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl \
#       keras==3.15.1 namex==0.1.0 optree==0.20.0
# and, only if the GPU machine lacks them: rich markdown-it-py mdurl pygments
# h5py ml-dtypes absl-py (pin the versions `pip list` shows where keras works).
#
# Environment: PYTHON (default python3), SITE (default /tmp/site), OUT (the
# folder for gpu_check.json; default results/).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_setup.sh
OUT_DIR="${OUT:-results}"
mkdir -p "$OUT_DIR"
"$PYTHON" benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json" "$@"
