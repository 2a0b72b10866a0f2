"""``keras-resnet benchmark``: images/second of our models, side by side with a reference.

    keras-resnet benchmark --model ResNet50 --mode train --batch-size 16 --image-size 224 \\
        --steps 3 --rounds 3 --precision auto --compare keras.applications

``train`` times ``model.fit`` steps of our model built and compiled as ``keras-resnet
train`` builds it (precision from :func:`keras_resnet.hardware.resolve_precision`, a
float32 softmax under mixed precision, SGD with momentum, sparse categorical
crossentropy, XLA only where :func:`~keras_resnet.hardware.resolve_jit_compile` says it
pays). ``infer`` times ``model.predict`` of the model export serves: BatchNormalization
folded into the convolutions (:func:`keras_resnet.inference.fold_batch_norm`), same
precision. ``data`` times the input pipeline alone (``keras_resnet.data`` for the
``cifar`` and ``imagenet`` augmentation presets). All on synthetic data held in memory,
after warm-up.

``--compare keras.applications`` measures the same-named ``keras.applications`` model
with a plain ``compile`` / ``fit`` / ``predict`` (float32, Keras' defaults, the same SGD
and loss) in the same process; ``--compare torchvision`` measures torchvision's model in a
subprocess (``python -m keras_resnet.benchmark.torch_worker``, :mod:`.torch_worker`) when
torch is importable (here, or in ``--torch-python``), in its fastest setting:
channels-last with float16 autocast and a GradScaler on CUDA, bfloat16 autocast on CPUs
(``--torch-precision fp32`` turns autocast off; ``--torch-compile`` adds
``torch.compile``). Where torchvision itself cannot be imported the worker builds the same
architecture in plain torch (:mod:`.torch_resnet`) and reports ``torch_model: "torch"``.

The implementations alternate round by round (A B A B ...), so that load from other
processes hits them alike. ``images_per_sec`` is the median over rounds and
``keras_resnet_speedup`` the median of per-round ratios; ``*_best`` use the fastest round
of each (the least disturbed one, on a shared machine). Every row's ``machine`` says how
quiet the machine was (:mod:`.quiet`: load average before/after, CPU seconds other
processes used during the run); a run that was not quiet gets a one-line warning on stderr.

Output: one JSON object per line per implementation with ``impl, model, mode, precision,
images_per_sec, gflops_per_sec, peak_fraction, machine`` (and the settings), then a table.
``peak_fraction`` divides by the matmul peak for that precision measured in the same
run (best of several large matmuls, :mod:`.flops`). FLOPs count 2 per multiply-add of the
convolutions and dense layers; a training step counts three forward passes.
"""

from keras_resnet.benchmark.flops import forward_flops, layer_flops, matmul_peak_gflops
from keras_resnet.benchmark.quiet import LoadMonitor
from keras_resnet.benchmark.runner import (
    COMPARES,
    DATA_PRESETS,
    MODES,
    TORCHVISION_NAMES,
    build_keras_applications,
    build_ours,
    check_args,
    compares_of,
    format_table,
    run_benchmark,
)

__all__ = [
    "COMPARES", "MODES", "DATA_PRESETS", "TORCHVISION_NAMES", "LoadMonitor", "build_keras_applications",
    "build_ours", "check_args", "compares_of", "format_table",
    "forward_flops", "layer_flops", "matmul_peak_gflops", "run_benchmark",
]
