# Sourced by the GPU scripts (gpu_check.sh, gpu_tutorial.sh): on a machine
# with JAX, no TensorFlow and no network, installs Keras and whichever of its
# small dependencies are missing from the wheels carried in .whl/ (see
# gpu_check.sh for getting them), then selects the JAX backend.
#
# Environment: PYTHON (default python3), SITE (default /tmp/site).
PYTHON="${PYTHON:-python3}"
SITE="${SITE:-/tmp/site}"

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
      echo "gpu_setup: $module is already installed; not installing $(basename "$wheel")"
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
    --format=csv,noheader || echo "gpu: no nvidia-smi"
"$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices()); print('keras', keras.__version__)"
