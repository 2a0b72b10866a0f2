#!/bin/sh
# The GPU figures in BENCHMARKS.md: ResNet-50 on one GPU through Keras 3's JAX backend
# (the GPU machine has JAX, PyTorch and torchvision but no TensorFlow), side by side with
# keras.applications (same backend, same process) and torchvision (AMP, channels-last).
#   sh benchmarks/gpu_jax.sh train|infer|parity    (from the repository root)
# Needs keras (and its namex / optree) importable next to jax; PyTorch for torchvision.
set -eu
stage=${1:?train, infer or parity}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# JAX takes half the GPU memory, leaving the rest to torchvision's subprocess;
# its compilation cache spares recompiling the same model for a second reference.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/keras_resnet_jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
B=${BATCH:-256}
bench() {
    python -m keras_resnet benchmark --model ResNet50 --batch-size "$B" --image-size 224 \
        --steps "${STEPS:-10}" --rounds "${ROUNDS:-3}" "$@"
}
case $stage in
train | infer)
    # the defaults (ours: precision auto = mixed_float16 on a GPU) against Keras' defaults
    # (fp32) and torchvision's fastest setting
    bench --mode "$stage" --compare keras.applications,torchvision
    # the implementation alone: keras.applications under the same policy, per policy
    bench --mode "$stage" --precision mixed_float16 --reference-precision same
    bench --mode "$stage" --precision mixed_bfloat16 --reference-precision same
    bench --mode "$stage" --precision fp32 --reference-precision same
    ;;
parity)
    python benchmarks/precision_parity.py --data "${DATA:?an .npz from precision_parity.py --save-data}" \
        --precisions fp32,mixed_float16,mixed_bfloat16 --seeds 0,1,2
    ;;
*)
    echo "unknown stage: $stage" >&2
    exit 2
    ;;
esac
