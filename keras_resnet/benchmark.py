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
subprocess when torch is importable, in its fastest setting: channels-last with float16
autocast and a GradScaler on CUDA, bfloat16 autocast on CPUs (``--torch-precision fp32``
turns autocast off; ``--torch-compile`` adds ``torch.compile``). Where torchvision itself
cannot be imported (there is no CPU build of it for some torch wheels) the worker builds
the same architecture in plain torch and reports ``torch_model: "torch"`` with its
parameter count (25,557,032 for ResNet-50, as torchvision's). The implementations
alternate round by round (A B A B ...), so that load from other processes hits them alike. ``images_per_sec`` is the median over rounds and
``keras_resnet_speedup`` the median of per-round ratios; ``*_best`` use the fastest round
of each (the least disturbed one, on a shared machine).

Output: one JSON object per line per implementation with ``impl, model, mode, precision,
images_per_sec, gflops_per_sec, peak_fraction`` (and the settings), then a table.
``peak_fraction`` divides by the matmul peak for that precision measured in the same
run (best of several large matmuls). FLOPs count 2 per multiply-add of the convolutions
and dense layers; a training step counts three forward passes.
"""

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time

MODES = ("train", "infer", "data")
COMPARES = ("keras.applications", "torchvision", "none")
PRECISIONS = ("auto", "fp32", "mixed_bfloat16", "mixed_float16")
DATA_PRESETS = ("cifar", "imagenet")
TORCHVISION_NAMES = {"ResNet18": "resnet18", "ResNet34": "resnet34", "ResNet50": "resnet50",
                     "ResNet50V1_5": "resnet50", "ResNet101": "resnet101", "ResNet152": "resnet152"}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # bad arguments raise, naming the argument (argparse's message does)
        raise ValueError(f"keras-resnet benchmark: {message}")


def build_parser(prog="keras-resnet benchmark"):
    p = _ArgumentParser(prog=prog, description="Images/second side by side with a reference.")
    p.add_argument("--model", required=True, help="a name from `keras-resnet list`")
    p.add_argument("--mode", required=True, help="train | infer | data (input pipeline alone)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--steps", type=int, default=5, help="timed steps per implementation and round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (A B A B ...)")
    p.add_argument("--precision", default="auto", help="auto | fp32 | mixed_bfloat16 | mixed_float16")
    p.add_argument("--compare", default="keras.applications",
                   help="keras.applications | torchvision | none, or several joined by commas")
    p.add_argument("--reference-precision", default="fp32",
                   help="keras.applications' policy: fp32 (Keras' default) | same (ours)")
    p.add_argument("--torch-precision", default="amp",
                   help="torchvision: amp (float16 autocast on CUDA, bfloat16 on CPUs) | fp32")
    p.add_argument("--torch-compile", action="store_true",
                   help="torchvision through torch.compile (each round's subprocess compiles)")
    p.add_argument("--dataset", default="digits", help="data mode: dataset for keras_resnet.data.load_data")
    p.add_argument("--json-only", action="store_true", help="print the JSON lines only")
    return p


def _fail(name, value, expected):
    raise ValueError(f"{name} must be {expected}. Received: {name}={value!r}")


REFERENCE_PRECISIONS = ("fp32", "same")


def _compares(compare):
    """``"a,b"`` or ``("a", "b")`` -> ``("a", "b")``; ``"none"`` -> ``()``."""
    names = compare.split(",") if isinstance(compare, str) else list(compare)
    return tuple(n.strip() for n in names if n.strip() and n.strip() != "none")


def check_args(*, model, mode, batch_size, image_size, steps, rounds, precision, compare,
               reference_precision="fp32", torch_precision="amp"):
    """Validate everything before any model is built; returns model_info(model)."""
    from keras_resnet.models import model_info

    info = model_info(model)  # ValueError naming `model` when unknown
    if mode not in MODES:
        _fail("mode", mode, f"one of {MODES}")
    for name, value, low in (("batch_size", batch_size, 1), ("image_size", image_size, 32),
                             ("steps", steps, 1), ("rounds", rounds, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            _fail(name, value, f"an integer >= {low}")
    if precision not in PRECISIONS:
        _fail("precision", precision, f"one of {PRECISIONS}")
    if not isinstance(compare, (str, list, tuple)) or any(c not in COMPARES for c in _compares(compare)):
        _fail("compare", compare, f"one or more (comma-separated) of {COMPARES}")
    if torch_precision not in ("amp", "fp32"):
        _fail("torch_precision", torch_precision, "one of ('amp', 'fp32')")
    if reference_precision not in REFERENCE_PRECISIONS:
        _fail("reference_precision", reference_precision, f"one of {REFERENCE_PRECISIONS}")
    return info


# ------------------------------------------------------------------------ measuring


def forward_flops(model):
    """FLOPs of one image's forward pass: 2 per multiply-add of Conv / Dense layers."""
    import keras

    total = 0
    for layer in _all_layers(model):
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            continue
        outputs = math.prod(d for d in layer.output.shape[1:])
        kernel = tuple(layer.kernel.shape)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            macs_per_output = kernel[0] * kernel[1]
        elif isinstance(layer, keras.layers.Dense):
            macs_per_output = kernel[0]
        else:  # Conv2D kernel (kh, kw, in / groups, out)
            macs_per_output = math.prod(kernel[:-1])
        total += 2 * macs_per_output * outputs
    return total


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _all_layers(layer)
        else:
            yield layer


def matmul_peak_gflops(precision, repeats=5):
    """Best GFLOP/s of large square matmuls in the compute dtype of ``precision``, on the
    device the Keras backend computes on (TensorFlow, JAX or PyTorch)."""
    import keras

    from keras_resnet.hardware import gpu_count

    dtype = {"fp32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}[precision]
    sizes = (4096, 8192) if gpu_count() else (1024, 2048)
    backend = keras.backend.backend()
    best = 0.0
    for n in sizes:
        if backend == "tensorflow":
            import tensorflow as tf

            a = tf.cast(tf.random.normal((n, n), dtype="float32"), dtype)
            matmul = tf.function(lambda a: tf.reduce_sum(tf.cast(tf.matmul(a, a)[:1, :1], "float32")))
            run = lambda: matmul(a).numpy()  # noqa: E731
        elif backend == "jax":
            import jax
            import jax.numpy as jnp

            a = jax.random.normal(jax.random.key(0), (n, n), dtype="float32").astype(dtype)
            matmul = jax.jit(lambda a: jnp.matmul(a, a)[:1, :1].astype("float32").sum())
            run = lambda: matmul(a).block_until_ready()  # noqa: E731
        else:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            a = torch.randn(n, n, device=device).to(getattr(torch, dtype))

            def run():
                with torch.no_grad():
                    float(torch.matmul(a, a)[:1, :1].float().sum())

        run()
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def _timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """When each batch of a fit or predict call has finished on the device.

        ``async_safe``: on backends that allow it (JAX, PyTorch) Keras runs this in a
        worker thread, so waiting here for a step's results does not stall the
        dispatch of the next step, as a plain ``fit`` without per-batch callbacks runs.
        On TensorFlow Keras calls it synchronously.
        """

        async_safe = True

        def __init__(self):
            super().__init__()
            self.ends = {}

        def _end(self, batch, logs=None):
            import numpy as np

            for value in keras.tree.flatten(logs or {}):
                np.asarray(value)  # wait for the step: device work is asynchronous
            self.ends[batch] = time.perf_counter()

        on_train_batch_end = on_predict_batch_end = _end

    return StepTimer()


class _KerasRunner:
    """Times fit / predict steps of one compiled Keras model on one in-memory batch."""

    def __init__(self, impl, model, mode, batch_size, precision):
        import keras
        import numpy as np

        self.impl, self.model, self.mode, self.precision = impl, model, mode, precision
        self.peak_precision = precision
        self.batch_size = batch_size
        rng = np.random.default_rng(0)
        shape = (batch_size,) + tuple(model.input_shape[1:])
        x = rng.uniform(-1.0, 1.0, shape).astype("float32")
        y = rng.integers(0, int(model.output_shape[-1]), batch_size).astype("int32")
        batch = (x, y) if mode == "train" else x
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            self.data = tf.data.Dataset.from_tensors(batch).repeat()
        else:
            if keras.backend.backend() == "jax":  # once onto the device, as tf.data's cache would
                batch = keras.tree.map_structure(keras.ops.convert_to_tensor, batch)
            batch = batch if mode == "train" else (batch,)  # a generator yields tuples

            def repeat():
                while True:
                    yield batch

            self.data = repeat()
        self.flops_per_image = forward_flops(model) * (3 if mode == "train" else 1)

    def warm_up(self):
        self.seconds_per_step(1)

    def seconds_per_step(self, steps):
        """Mean seconds of ``steps`` steps, timed from the end of one extra first step
        (which also pays for creating the iterator) to the end of the last."""
        timer = _timer()
        if self.mode == "train":
            self.model.fit(self.data, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False,
                           callbacks=[timer])
        else:
            self.model.predict(self.data, steps=steps + 1, verbose=0, callbacks=[timer])
        return (timer.ends[steps] - timer.ends[0]) / steps


class _TorchRunner:
    """Times torchvision's model in a subprocess per round (interleaving with the others)."""

    def __init__(self, arch, mode, batch_size, image_size, classes, compile_model=False, amp=True):
        self.impl, self.mode, self.precision = "torchvision", mode, "amp_channels_last"
        self.peak_precision = "mixed_bfloat16"
        self.batch_size = batch_size
        self.config = {"arch": arch, "mode": mode, "batch_size": batch_size,
                       "image_size": image_size, "classes": classes, "compile": bool(compile_model),
                       "amp": bool(amp)}
        self.flops_per_image = None

    def warm_up(self):
        pass  # every subprocess warms up before it times

    def seconds_per_step(self, steps):
        config = json.dumps({**self.config, "steps": steps})
        proc = subprocess.run([sys.executable, "-c", _TORCH_WORKER, config],
                              capture_output=True, text=True, check=False)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"torchvision benchmark failed:\n{proc.stderr[-2000:]}")
        result = json.loads(lines[-1])
        factor = 3 if self.mode == "train" else 1
        self.flops_per_image = result["forward_flops"] * factor
        self.precision, self.peak_precision = result["precision"], result["peak_precision"]
        self.extra = {"torch_model": result["source"], "parameters": result["parameters"]}
        return result["seconds_per_step"]


_TORCH_WORKER = r"""
import json, sys, time
import torch
cfg = json.loads(sys.argv[1])
try:
    import torchvision
    source = "torchvision"
except Exception:  # no torchvision build for this torch (e.g. a CPU-only torch wheel)
    torchvision = None
    source = "torch"

def torch_resnet(arch, num_classes):
    # torchvision's ResNet architecture (v1.5: stride on the 3x3; zero-init off) in plain torch,
    # for machines where torchvision cannot be imported; the parameter count it reports
    # ("parameters" below) equals torchvision's.
    nn = torch.nn
    depth = int(arch[len("resnet"):])
    bottleneck = depth >= 50
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    def cbr(cin, cout, k, stride=1, relu=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        return layers + [nn.ReLU(inplace=True)] if relu else layers
    class Unit(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * (4 if bottleneck else 1)
            if bottleneck:
                body = cbr(cin, width, 1) + cbr(width, width, 3, stride) + cbr(width, cout, 1, relu=False)
            else:
                body = cbr(cin, width, 3, stride) + cbr(width, cout, 3, relu=False)
            self.body = nn.Sequential(*body)
            self.short = (nn.Sequential(*cbr(cin, cout, 1, stride, relu=False))
                          if stride != 1 or cin != cout else nn.Identity())
        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))
    layers, cin = cbr(3, 64, 7, 2) + [nn.MaxPool2d(3, 2, 1)], 64
    for stage, n in enumerate(blocks):
        width = 64 * 2 ** stage
        for i in range(n):
            layers.append(Unit(cin, width, 2 if stage > 0 and i == 0 else 1))
            cin = width * (4 if bottleneck else 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)

torch.manual_seed(0)
# Its fastest setting per device: CUDA: float16 autocast with a GradScaler (torchvision's
# reference --amp), cuDNN autotuning; CPU: bfloat16 autocast. Channels-last on both.
cuda = torch.cuda.is_available()
device = "cuda" if cuda else "cpu"
amp_dtype = torch.float16 if cuda else torch.bfloat16
amp = cfg["amp"]
torch.backends.cudnn.benchmark = True
if torchvision is not None:
    model = getattr(torchvision.models, cfg["arch"])(num_classes=cfg["classes"])
else:
    model = torch_resnet(cfg["arch"], cfg["classes"])
model = model.to(device, memory_format=torch.channels_last)
b, s = cfg["batch_size"], cfg["image_size"]
x = torch.rand(b, 3, s, s, device=device).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, cfg["classes"], (b,), device=device)
flops = [0]
def count(module, inputs, output):
    if isinstance(module, torch.nn.Conv2d):
        flops[0] += 2 * module.weight[0].numel() * output[0].numel()
    elif isinstance(module, torch.nn.Linear):
        flops[0] += 2 * module.in_features * output[0].numel()
hooks = [m.register_forward_hook(count) for m in model.modules()
         if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
with torch.no_grad():
    model.eval(); model(x[:1])
for h in hooks: h.remove()
if cfg["compile"]:
    model = torch.compile(model)
if cfg["mode"] == "train":
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1 * b / 256, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device, enabled=cuda and amp)
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
else:
    model.eval()
    def step():
        with torch.inference_mode(), torch.autocast(device, dtype=amp_dtype, enabled=amp):
            model(x)
def sync():
    if cuda:
        torch.cuda.synchronize()
for _ in range(5 if cfg["compile"] else 3 if cuda else 2):
    step()
sync()
start = time.perf_counter()
for _ in range(cfg["steps"]):
    step()
sync()
print(json.dumps({"seconds_per_step": (time.perf_counter() - start) / cfg["steps"],
                  "forward_flops": flops[0], "source": source,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "precision": (("fp16" if cuda else "bf16") + "_autocast" if amp else "fp32")
                               + "_channels_last_" + device
                               + ("_compiled" if cfg["compile"] else ""),
                  "peak_precision": ("mixed_float16" if cuda else "mixed_bfloat16") if amp else "fp32"}))
"""


# ------------------------------------------------------------------------ building


def _with_policy(policy, build):
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        return build()
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_ours(name, *, mode, batch_size, image_size, classes, precision, steps):
    """Our model as `keras-resnet train` builds and compiles it (train) or as export serves it (infer)."""
    import keras

    from keras_resnet import get_model
    from keras_resnet.hardware import keras_policy_name, resolve_jit_compile

    def build():  # under a mixed policy the builders keep the classifier in float32, as training relies on
        return get_model(name, weights=None, input_shape=(image_size, image_size, 3), classes=classes)

    model = _with_policy(keras_policy_name(precision), build)
    jit_compile = resolve_jit_compile("auto")
    if mode == "infer":
        from keras_resnet.inference import fold_batch_norm

        model = fold_batch_norm(model)
        model.compile(jit_compile=jit_compile)
        return model
    from keras_resnet.training.recipe import compile_model

    # the training recipe: SGD momentum 0.9, weight decay 1e-4, sparse categorical crossentropy
    compile_model(model, steps_per_epoch=steps, epochs=1, global_batch_size=batch_size,
                  num_classes=classes, jit_compile=jit_compile)
    return model


def build_keras_applications(name, *, mode, batch_size, image_size, precision="fp32"):
    """keras.applications' same-named model, plain compile with Keras' defaults (float32
    unless ``precision`` names a mixed policy; Keras then adds loss scaling for float16)."""
    import keras

    from keras_resnet.hardware import keras_policy_name

    def build():
        return getattr(keras.applications, name)(weights=None, input_shape=(image_size, image_size, 3))

    model = _with_policy(keras_policy_name(precision), build)
    if mode == "train":
        model.compile(optimizer=keras.optimizers.SGD(0.1 * batch_size / 256, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
    return model


# ------------------------------------------------------------------------ running


def run_benchmark(model, *, mode, batch_size, image_size, steps=5, rounds=2, precision="auto",
                  compare="keras.applications", reference_precision="fp32", torch_compile=False,
                  torch_precision="amp",
                  dataset="digits", log=print):
    """Measure and return one result dict per implementation (see the module docstring)."""
    info = check_args(model=model, mode=mode, batch_size=batch_size, image_size=image_size,
                      steps=steps, rounds=rounds, precision=precision, compare=compare,
                      reference_precision=reference_precision, torch_precision=torch_precision)
    if mode == "data":
        return _run_data(model, dataset, batch_size=batch_size, image_size=image_size, steps=steps,
                         rounds=rounds, preprocessing=info["preprocessing"])
    import keras

    from keras_resnet.hardware import gpu_count, onednn_enabled, resolve_precision

    precision = resolve_precision(precision)
    device = "gpu" if gpu_count() else "cpu"
    onednn = onednn_enabled()
    classes = 10 if info["family"] == "cifar" else 1000
    runners = [_KerasRunner("keras_resnet", build_ours(
        model, mode=mode, batch_size=batch_size, image_size=image_size, classes=classes,
        precision=precision, steps=steps), mode, batch_size, precision)]
    compares = _compares(compare)
    if "keras.applications" in compares:
        if hasattr(keras.applications, model):
            ref_precision = precision if reference_precision == "same" else "fp32"
            reference = build_keras_applications(model, mode=mode, batch_size=batch_size,
                                                  image_size=image_size, precision=ref_precision)
            runners.append(_KerasRunner("keras.applications", reference, mode, batch_size, ref_precision))
        else:
            log(f"# no keras.applications model named {model!r}: comparison skipped")
    if "torchvision" in compares:
        if model not in TORCHVISION_NAMES:
            log(f"# no torchvision counterpart of {model!r}: comparison skipped")
        elif not importlib.util.find_spec("torch"):
            log("# torch not importable (pip install keras-resnet-applications[torch]): comparison skipped")
        else:
            runners.append(_TorchRunner(TORCHVISION_NAMES[model], mode, batch_size, image_size, classes,
                                        compile_model=torch_compile, amp=torch_precision == "amp"))

    for runner in runners:
        runner.warm_up()
    times = {runner.impl: [] for runner in runners}
    peaks = {}
    for _ in range(rounds):
        for runner in runners:
            times[runner.impl].append(runner.seconds_per_step(steps))
        for peak_precision in {r.peak_precision for r in runners}:  # under the same load as the round
            peaks[peak_precision] = max(peaks.get(peak_precision, 0.0),
                                        matmul_peak_gflops(peak_precision, repeats=3))

    results = []
    for runner in runners:
        peak_precision = runner.peak_precision
        seconds = statistics.median(times[runner.impl])
        images_per_sec = batch_size / seconds
        gflops = images_per_sec * runner.flops_per_image / 1e9
        result = {
            "impl": runner.impl, "model": model, "mode": mode, "precision": runner.precision,
            "backend": "torch" if runner.impl == "torchvision" else keras.backend.backend(),
            "device": device, "onednn": None if runner.impl == "torchvision" else onednn,
            "images_per_sec": round(images_per_sec, 3), "gflops_per_sec": round(gflops, 2),
            "peak_fraction": round(gflops / peaks[peak_precision], 4),
            "peak_gflops": round(peaks[peak_precision], 1),
            "batch_size": batch_size, "image_size": image_size, "steps": steps, "rounds": rounds,
            "images_per_sec_rounds": [round(batch_size / t, 3) for t in times[runner.impl]],
            "images_per_sec_best": round(batch_size / min(times[runner.impl]), 3),
        }
        result.update(getattr(runner, "extra", {}))
        if runner.impl != "keras_resnet":
            ratios = [b / a for a, b in zip(times["keras_resnet"], times[runner.impl])]
            result["keras_resnet_speedup"] = round(statistics.median(ratios), 3)
            result["keras_resnet_speedup_best"] = round(min(times[runner.impl]) / min(times["keras_resnet"]), 3)
        results.append(result)
    return results


def _run_data(model, dataset, *, batch_size, image_size, steps, rounds, preprocessing):
    """Images/second the input pipeline delivers alone, per augmentation preset."""
    from keras_resnet.data import load_data

    data = load_data(dataset)
    per_epoch = data.steps_per_epoch(batch_size)
    if per_epoch < 1:
        _fail("batch_size", batch_size, f"at most the {data.num_train} training images of {dataset!r}")
    epochs = math.ceil((steps + 1) / per_epoch) + 1

    def seconds_per_batch(preset):
        # A fresh pipeline each round: an idle iterator's prefetch buffers would
        # otherwise fill while the other preset is timed.
        iterator = iter(data.train_dataset(batch_size, image_size=image_size, augmentation=preset,
                                           preprocessing=preprocessing, epochs=epochs))
        next(iterator)  # start-up: threads, first decode
        start = time.perf_counter()
        for _ in range(steps):
            images, _labels = next(iterator)
        images.numpy()
        return (time.perf_counter() - start) / steps

    times = {preset: [] for preset in DATA_PRESETS}
    for _ in range(rounds):
        for preset in DATA_PRESETS:
            times[preset].append(seconds_per_batch(preset))
    return [
        {"impl": "keras_resnet.data", "model": model, "mode": "data", "precision": "float32",
         "dataset": data.name, "augmentation": preset, "preprocessing": preprocessing,
         "images_per_sec": round(batch_size / statistics.median(t), 1),
         "gflops_per_sec": None, "peak_fraction": None, "batch_size": batch_size,
         "image_size": image_size, "steps": steps, "rounds": rounds,
         "images_per_sec_rounds": [round(batch_size / s, 1) for s in t]}
        for preset, t in times.items()
    ]


def format_table(results):
    header = ("impl", "mode", "precision", "img/s", "GFLOP/s", "peak", "speedup")
    rows = [header]
    for r in results:
        label = r["impl"] + (f" ({r['augmentation']})" if "augmentation" in r else "")
        peak = "" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}%"
        gflops = "" if r["gflops_per_sec"] is None else f"{r['gflops_per_sec']:.1f}"
        speedup = f"ours {r['keras_resnet_speedup']:.2f}x" if "keras_resnet_speedup" in r else ""
        rows.append((label, r["mode"], r["precision"], f"{r['images_per_sec']:.2f}", gflops, peak, speedup))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def cli_main(command, argv):
    args = build_parser(f"keras-resnet {command}").parse_args(argv)
    results = run_benchmark(
        args.model, mode=args.mode, batch_size=args.batch_size, image_size=args.image_size,
        steps=args.steps, rounds=args.rounds, precision=args.precision, compare=args.compare,
        reference_precision=args.reference_precision, torch_compile=args.torch_compile,
        torch_precision=args.torch_precision, dataset=args.dataset,
        log=lambda message: print(message, file=sys.stderr),
    )
    for result in results:
        print(json.dumps(result), flush=True)
    if not args.json_only:
        print()
        print(format_table(results))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(cli_main("benchmark", sys.argv[1:]))
