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
PYTHON="${PYTHON:-python3}"
SITE="${SITE:-/tmp/site}"
OUT_DIR="${OUT:-results}"

# A carried wheel is installed only where its module is missing: a second
# copy of ml-dtypes or numpy beside JAX's own can break JAX.
module_of() {
  case "$1" in
    keras-*) echo keras ;;
    namex-*) echo namex ;;
    optree-*) echo optree ;;
    rich-*) echo rich ;;
    markdown_it_py-*) echo markdown_it ;;
    mdurl-*) echo mdurl ;;
    pygments-*|Pygments-*) echo pygments ;;
    h5py-*) echo h5py ;;
    ml_dtypes-*) echo ml_dtypes ;;
    absl_py-*) echo absl ;;
    *) echo "" ;;
  esac
}

wheels=()
if compgen -G ".whl/*.whl" > /dev/null; then
  for wheel in .whl/*.whl; do
    module="$(module_of "$(basename "$wheel")")"
    if [ -n "$module" ] && "$PYTHON" -c "import $module" 2>/dev/null; then
      echo "gpu_check: $module is already installed; not installing $(basename "$wheel")"
    else
      wheels+=("$wheel")
    fi
  done
fi
if [ "${#wheels[@]}" -gt 0 ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$SITE" "${wheels[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader || echo "gpu_check: no nvidia-smi"
"$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices()); print('keras', keras.__version__)"
mkdir -p "$OUT_DIR"
"$PYTHON" benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json" "$@"
