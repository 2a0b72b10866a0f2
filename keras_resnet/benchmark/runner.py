"""Building the implementations and timing them round by round (A B A B ...)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

from keras_resnet.benchmark.flops import forward_flops, matmul_peak_gflops
from keras_resnet.benchmark.quiet import LoadMonitor, warning
from keras_resnet.utils import check_choice, fail, is_int, keras_policy_name, normalize_precision, with_dtype_policy
from keras_resnet.weights.convert import REFERENCE_MODULES

MODES = ("train", "infer", "data")
COMPARES = ("keras.applications", "torchvision", "none")
REFERENCE_PRECISIONS = ("fp32", "same")
TORCH_PRECISIONS = ("amp", "fp32")


DATA_PRESETS = ("cifar", "imagenet")
# our model -> the torchvision constructor timed beside it: the module its checkpoints come
# from, and for keras.applications' v1 ResNets torchvision's of the same depth (v1.5: the
# stride on the 3x3, the same layers and parameters)
TORCHVISION_NAMES = {
    **{name: ctor for name, (library, ctor) in REFERENCE_MODULES.items() if library == "torchvision"},
    **{f"ResNet{d}": REFERENCE_MODULES[f"ResNet{d}V1_5"][1] for d in (18, 34, 50, 101, 152)},
}


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


def _repeat_batch(batch, mode):
    """One in-memory batch, repeated: a tf.data pipeline on TensorFlow, a generator elsewhere."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors(batch).repeat()
    if keras.backend.backend() == "jax":  # once onto the device, as tf.data's cache would
        batch = keras.tree.map_structure(keras.ops.convert_to_tensor, batch)
    batch = batch if mode == "train" else (batch,)  # a generator yields tuples

    def repeat():
        while True:
            yield batch

    return repeat()


class KerasRunner:
    """Times fit / predict steps of one compiled Keras model on one in-memory batch."""

    def __init__(self, impl: str, model, mode: str, batch_size: int, precision: str):
        import numpy as np

        self.impl, self.model, self.mode, self.precision = impl, model, mode, precision
        self.peak_precision = precision
        self.batch_size = batch_size
        rng = np.random.default_rng(0)
        x = rng.uniform(-1.0, 1.0, (batch_size,) + tuple(model.input_shape[1:])).astype("float32")
        y = rng.integers(0, int(model.output_shape[-1]), batch_size).astype("int32")
        self.data = _repeat_batch((x, y) if mode == "train" else x, mode)
        self.flops_per_image = forward_flops(model) * (3 if mode == "train" else 1)

    def warm_up(self) -> None:
        self.seconds_per_step(1)

    def seconds_per_step(self, steps: int) -> float:
        """Mean seconds of ``steps`` steps, timed from the end of one extra first step
        (which also pays for creating the iterator) to the end of the last."""
        timer = _timer()
        if self.mode == "train":
            self.model.fit(self.data, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False,
                           callbacks=[timer])
        else:
            self.model.predict(self.data, steps=steps + 1, verbose=0, callbacks=[timer])
        return (timer.ends[steps] - timer.ends[0]) / steps


def torch_worker_command(python: str, config: dict) -> list[str]:
    """The worker's command line: ``python -m keras_resnet.benchmark.torch_worker CONFIG``
    in this interpreter; another interpreter (``--torch-python``) need not have Keras, so
    there the worker starts from its file."""
    if _is_this_interpreter(python):
        return [python, "-m", "keras_resnet.benchmark.torch_worker", json.dumps(config)]
    here = os.path.dirname(os.path.abspath(__file__))
    return [python, os.path.join(here, "torch_worker.py"), json.dumps(config)]


def run_torch_worker(python: str, config: dict, *, prefix: tuple = ()) -> dict:
    """Run the torch worker once in ``python`` with ``config`` (``prefix``: a launcher
    before the interpreter, e.g. ``("taskset", "-c", "0,1")``); its JSON result."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="torch",  # keras_resnet's import then loads no TensorFlow
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([*prefix, *torch_worker_command(python, config)],
                          capture_output=True, text=True, check=False, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"torch worker failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


class TorchRunner:
    """Times torchvision's model in a subprocess per round (interleaving with the others)."""

    def __init__(self, arch: str, mode: str, batch_size: int, image_size: int, classes: int,
                 compile_model: bool = False, amp: bool = True, python: str | None = None):
        self.impl, self.mode, self.precision = "torchvision", mode, "amp_channels_last"
        self.peak_precision = "mixed_bfloat16" if amp else "fp32"
        self.batch_size = batch_size
        self.python = python or sys.executable
        self.config = {"arch": arch, "mode": mode, "batch_size": batch_size,
                       "image_size": image_size, "classes": classes, "compile": bool(compile_model),
                       "amp": bool(amp)}
        self.flops_per_image = None

    def warm_up(self) -> None:
        pass  # every subprocess warms up before it times

    def seconds_per_step(self, steps: int) -> float:
        result = run_torch_worker(self.python, {**self.config, "steps": steps})
        self.flops_per_image = result["forward_flops"] * (3 if self.mode == "train" else 1)
        self.precision, self.peak_precision = result["precision"], result["peak_precision"]
        self.extra = {"torch_model": result["source"], "parameters": result["parameters"]}
        return result["seconds_per_step"]


def _is_this_interpreter(python: str) -> bool:
    """Whether ``python`` names this interpreter. Paths are compared without resolving links:
    every virtual environment's ``python`` links to the same base interpreter, yet each has
    its own packages."""
    return os.path.abspath(python) == os.path.abspath(sys.executable)


def torch_available(python: str | None) -> bool:
    """Whether ``python`` (this interpreter when None) can import torch."""
    if python is None or _is_this_interpreter(python):
        return importlib.util.find_spec("torch") is not None
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, check=False)
    return probe.returncode == 0


# ------------------------------------------------------------------------ building


def build_ours(name: str, *, mode: str, batch_size: int, image_size: int, classes: int,
               precision: str, steps: int):
    """Our model as `keras-resnet train` builds and compiles it (train) or as export serves it (infer)."""
    from keras_resnet import get_model
    from keras_resnet.hardware import resolve_jit_compile

    def build():  # under a mixed policy the builders keep the classifier in float32, as training relies on
        return get_model(name, weights=None, input_shape=(image_size, image_size, 3), classes=classes)

    model = with_dtype_policy(keras_policy_name(precision), build)
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


def build_keras_applications(name: str, *, mode: str, batch_size: int, image_size: int,
                             precision: str = "fp32"):
    """keras.applications' same-named model, plain compile with Keras' defaults (float32
    unless ``precision`` names a mixed policy; Keras then adds loss scaling for float16)."""
    import keras

    def build():
        return getattr(keras.applications, name)(weights=None, input_shape=(image_size, image_size, 3))

    model = with_dtype_policy(keras_policy_name(precision), build)
    if mode == "train":
        model.compile(optimizer=keras.optimizers.SGD(0.1 * batch_size / 256, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
    return model


# ------------------------------------------------------------------------ running


def make_runners(model: str, info: dict, *, mode: str, batch_size: int, image_size: int, steps: int,
                 precision: str, compares: tuple, reference_precision: str, torch_compile: bool,
                 torch_precision: str, torch_python: str | None, log: Callable[[str], None]) -> list:
    """Ours first, then each comparison that exists for ``model`` on this machine."""
    import keras

    classes = 10 if info["family"] == "cifar" else 1000
    runners = [KerasRunner("keras_resnet", build_ours(
        model, mode=mode, batch_size=batch_size, image_size=image_size, classes=classes,
        precision=precision, steps=steps), mode, batch_size, precision)]
    if "keras.applications" in compares:
        if hasattr(keras.applications, model):
            ref_precision = precision if reference_precision == "same" else "fp32"
            reference = build_keras_applications(model, mode=mode, batch_size=batch_size,
                                                 image_size=image_size, precision=ref_precision)
            runners.append(KerasRunner("keras.applications", reference, mode, batch_size, ref_precision))
        else:
            log(f"# no keras.applications model named {model!r}: comparison skipped")
    if "torchvision" in compares:
        if model not in TORCHVISION_NAMES:
            log(f"# no torchvision counterpart of {model!r}: comparison skipped")
        elif not torch_available(torch_python):
            log("# torch not importable (pip install keras-resnet-applications[torch], or "
                "--torch-python): comparison skipped")
        else:
            runners.append(TorchRunner(TORCHVISION_NAMES[model], mode, batch_size, image_size, classes,
                                       compile_model=torch_compile, amp=torch_precision == "amp",
                                       python=torch_python))
    return runners


def time_rounds(runners: list, *, steps: int, rounds: int) -> tuple[dict, dict]:
    """Seconds per step of every runner, round by round in turn, and the best matmul peak
    per precision measured after each round (under the same load as the round)."""
    for runner in runners:
        runner.warm_up()
    times = {runner.impl: [] for runner in runners}
    peaks = {}
    for _ in range(rounds):
        for runner in runners:
            times[runner.impl].append(runner.seconds_per_step(steps))
        for peak_precision in {r.peak_precision for r in runners}:
            peaks[peak_precision] = max(peaks.get(peak_precision, 0.0),
                                        matmul_peak_gflops(peak_precision, repeats=3))
    return times, peaks


def result_row(runner, *, model: str, times: dict, peaks: dict, settings: dict) -> dict:
    """One implementation's JSON record."""
    import keras

    from keras_resnet.hardware import gpu_count, onednn_enabled

    batch_size, own = settings["batch_size"], times[runner.impl]
    images_per_sec = batch_size / statistics.median(own)
    gflops = images_per_sec * runner.flops_per_image / 1e9
    peak = peaks[runner.peak_precision]
    torch_row = runner.impl == "torchvision"
    row = {
        "impl": runner.impl, "model": model, "mode": runner.mode, "precision": runner.precision,
        "backend": "torch" if torch_row else keras.backend.backend(),
        "device": "gpu" if gpu_count() else "cpu", "onednn": None if torch_row else onednn_enabled(),
        "images_per_sec": round(images_per_sec, 3), "gflops_per_sec": round(gflops, 2),
        "peak_fraction": round(gflops / peak, 4), "peak_gflops": round(peak, 1), **settings,
        "images_per_sec_rounds": [round(batch_size / t, 3) for t in own],
        "images_per_sec_best": round(batch_size / min(own), 3),
    }
    row.update(getattr(runner, "extra", {}))
    if runner.impl != "keras_resnet":
        ratios = [b / a for a, b in zip(times["keras_resnet"], own)]
        row["keras_resnet_speedup"] = round(statistics.median(ratios), 3)
        row["keras_resnet_speedup_best"] = round(min(own) / min(times["keras_resnet"]), 3)
    return row


def run_benchmark(model: str, *, mode: str, batch_size: int, image_size: int, steps: int = 5,
                  rounds: int = 2, precision: str = "auto", compare="keras.applications",
                  reference_precision: str = "fp32", torch_compile: bool = False,
                  torch_precision: str = "amp", torch_python: str | None = None,
                  dataset: str = "digits", log: Callable[[str], None] = print) -> list[dict]:
    """Measure and return one result dict per implementation (see the package docstring).

    Every row carries ``machine``: the load average and the CPU time other processes used
    while it was measured (:mod:`keras_resnet.benchmark.quiet`); ``log`` gets one warning
    line when the machine was not quiet.
    """
    from keras_resnet.hardware import resolve_precision

    info, precision = check_args(model=model, mode=mode, batch_size=batch_size, image_size=image_size,
                                 steps=steps, rounds=rounds, precision=precision, compare=compare,
                                 reference_precision=reference_precision,
                                 torch_precision=torch_precision)
    monitor = LoadMonitor().start()
    if mode == "data":
        rows = run_data(model, dataset, batch_size=batch_size, image_size=image_size, steps=steps,
                        rounds=rounds, preprocessing=info["preprocessing"])
    else:
        runners = make_runners(model, info, mode=mode, batch_size=batch_size, image_size=image_size,
                               steps=steps, precision=resolve_precision(precision),
                               compares=compares_of(compare), reference_precision=reference_precision,
                               torch_compile=torch_compile, torch_precision=torch_precision,
                               torch_python=torch_python, log=log)
        times, peaks = time_rounds(runners, steps=steps, rounds=rounds)
        settings = {"batch_size": batch_size, "image_size": image_size, "steps": steps, "rounds": rounds}
        rows = [result_row(r, model=model, times=times, peaks=peaks, settings=settings) for r in runners]
    machine = monitor.stop().report()
    message = warning(machine)
    if message:
        log(message)
    return [{**row, "machine": machine} for row in rows]


def run_data(model: str, dataset: str, *, batch_size: int, image_size: int, steps: int, rounds: int,
             preprocessing: str) -> list[dict]:
    """Images/second the input pipeline delivers alone, per augmentation preset."""
    from keras_resnet.data import load_data

    data = load_data(dataset)
    if data.steps_per_epoch(batch_size) < 1:
        fail("batch_size", batch_size, f"at most the {data.num_train} training images of {dataset!r}")
    epochs = math.ceil((steps + 1) / data.steps_per_epoch(batch_size)) + 1

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


def compares_of(compare) -> tuple:
    """``"a,b"`` or ``("a", "b")`` -> ``("a", "b")``; ``"none"`` -> ``()``."""
    names = compare.split(",") if isinstance(compare, str) else list(compare)
    return tuple(n.strip() for n in names if n.strip() and n.strip() != "none")


def check_args(*, model: str, mode: str, batch_size: int, image_size: int, steps: int, rounds: int,
               precision: str, compare, reference_precision: str = "fp32",
               torch_precision: str = "amp") -> tuple[dict, str]:
    """Validate everything before any model is built; returns ``(model_info(model),
    precision in the vocabulary of keras_resnet.utils)``."""
    from keras_resnet.models import model_info

    info = model_info(model)  # ValueError naming `model` when unknown
    check_choice("mode", mode, MODES)
    for name, value, low in (("batch_size", batch_size, 1), ("image_size", image_size, 32),
                             ("steps", steps, 1), ("rounds", rounds, 1)):
        if not is_int(value) or value < low:
            fail(name, value, f"an integer >= {low}")
    precision = normalize_precision(precision)
    if not isinstance(compare, (str, list, tuple)) or any(c not in COMPARES for c in compares_of(compare)):
        fail("compare", compare, f"one or more (comma-separated) of {COMPARES}")
    check_choice("torch_precision", torch_precision, TORCH_PRECISIONS)
    check_choice("reference_precision", reference_precision, REFERENCE_PRECISIONS)
    return info, precision


def format_table(results: list[dict]) -> str:
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
