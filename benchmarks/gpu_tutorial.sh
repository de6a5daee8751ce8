#!/usr/bin/env bash
# The tutorial example (examples/cifar10_tutorial.py) at full scale on a GPU
# machine with JAX, no TensorFlow and no network, within a time budget.
#
#   bash benchmarks/gpu_tutorial.sh PACK_DIR OUT_DIR SECONDS
#
# PACK_DIR holds a copy of the offline CIFAR-10 pack (cifar10_jpeg.npz and its
# cifar10_to_npz.py, decoded here); carry it and .whl/ (gpu_setup.sh). Runs,
# while SECONDS last (each run is cut at the deadline; a tutorial run saves
# each stage as it ends, so the finished stages survive a cut, and a second
# call into the same OUT_DIR (one the machine keeps, e.g. results/) resumes
# after them):
#   1. the tutorial's defaults (two-phase SSL, supervised at equal steps and at
#      equal wall time), into OUT_DIR/default;
#   2. the same with --phase2-patience 10 --monitor val_accuracy, into
#      OUT_DIR/p10_val_accuracy.
# The views are made in the training step (no tf.data without TensorFlow).
# TUTORIAL_ARGS (optional) are added to both runs, e.g. a tiny scale to
# rehearse on a CPU with PYTHONPATH pointing at a `tensorflow` that fails.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # keras_ssl is not installed there
pack="$1" out="$2" budget="$3"
deadline=$((SECONDS + budget))
source benchmarks/gpu_setup.sh
"$PYTHON" "$pack/cifar10_to_npz.py" /tmp/cifar10_gpu.npz || exit 1

tutorial() {
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 60 ]; then echo "gpu_tutorial: no time left for: $*"; return; fi
  echo "gpu_tutorial: $left s left; running: $*"
  timeout "$left" "$PYTHON" examples/cifar10_tutorial.py --data /tmp/cifar10_gpu.npz \
      --augment-on-device --resume ${TUTORIAL_ARGS:-} "$@"
  echo "gpu_tutorial: exit $? after $((SECONDS)) s"
}
tutorial --out "$out/default"
tutorial --phase2-patience 10 --monitor val_accuracy --out "$out/p10_val_accuracy"
