"""Training: strategies, the ResNet recipe, callbacks, run folders and exact resume.

``keras-resnet train`` and :func:`train` fit any model of :func:`keras_resnet.list_models`
with ``model.fit`` on one device, all GPUs of a machine (``MirroredStrategy``), several
machines (``MultiWorkerMirroredStrategy``, see :func:`_multi_worker_fit_workaround`) or a
TPU, and leave a run folder a person can read::

    runs/ResNet20-digits-20250101-120000/
        config.json    every resolved option, versions, class names, preprocessing
        history.csv    one row per epoch (appended across resumes, never repeated)
        metrics.json   test top-1/top-5, epochs, time, images/s, export path
        history.png    loss and accuracy curves, train and validation
        model.keras    the final model;  best.keras  the best by validation accuracy
        logs/          TensorBoard
        backup/        state.npz: weights, optimizer, RNG states, epoch and step

The recipe follows He et al. 2015 ("Deep Residual Learning for Image Recognition"):
SGD with momentum 0.9, learning rate scaled linearly with the global batch
(``lr * batch / 256``, Goyal et al. 2017), step decay /10 at 50% and 75% of training
(or cosine), weight decay on conv/dense kernels only, and, for ResNet-110 on CIFAR,
the paper's warm-up: lr / 10 until the training error falls below 80%.

Exact resume: ``backup/state.npz`` holds every model variable (BatchNorm statistics and
the dropout / stochastic-depth ``SeedGenerator`` states included), every optimizer
variable (momentum, iteration count, loss scale), the epoch and the step inside the
epoch. It is written atomically every ``backup_steps`` steps and at every epoch end.
Shuffle order and augmentation come from ``(seed, epoch, step)`` in
:meth:`keras_resnet.data.ImageData.train_dataset`, so a resumed run sees exactly the
batches an uninterrupted run sees; with ``deterministic=True`` it ends with equal weights.
This replaces ``keras.callbacks.BackupAndRestore``, which restores only the epoch.
"""

import argparse
import contextlib
import csv
import datetime
import json
import math
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.recipe import (  # noqa: F401  (re-exported: the recipe's public names)
    PAPER_WARMUP,
    RECIPES,
    SCHEDULES,
    ResNetLearningRate,
    SparseCrossentropyWithSmoothing,
    _check_recipe,
    apply_weight_decay,
    compile_model,
)

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")
SPLITS = ("test", "val")

# Options that define what a run folder holds: resuming with a different value is an error.
_IDENTITY_KEYS = (
    "model",
    "dataset",
    "data_dir",
    "image_size",
    "num_classes",
    "batch_size",
    "global_batch_size",
    "preprocessing",
    "augmentation",
    "precision",
    "seed",
    "model_options",
    "zero_init_residual",
    "sync_bn",
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run folder keeps the last good backup."""


# --------------------------------------------------------------------------- strategies


def _tpu_hinted():
    """A TPU resolver is only asked where a TPU can be (asking elsewhere may hang on GCE metadata)."""
    return bool(
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or os.path.exists("/dev/accel0")
        or os.path.exists("/dev/vfio/0")
    )


def _connect_tpu():
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _tf_config_workers():
    try:
        cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={os.environ['TF_CONFIG']!r}")
    cluster = cfg.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def build_strategy(name="auto"):
    """A ``tf.distribute.Strategy`` by name.

    - ``"auto"``: a TPU when a resolver finds one, ``MultiWorkerMirroredStrategy`` when
      ``TF_CONFIG`` names several workers, ``MirroredStrategy`` over all GPUs when there
      are several, else TensorFlow's default strategy (one device).
    - ``"one-device"``: ``OneDeviceStrategy`` on the first GPU, or the CPU.
    - ``"mirrored"``: ``MirroredStrategy`` over all GPUs; without GPUs over all logical
      CPU devices (``tf.config.set_logical_device_configuration`` makes several).
    - ``"multi-worker"``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``.
    - ``"tpu"``: ``TPUStrategy`` (ValueError when no TPU is found).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "auto":
        if _tpu_hinted():
            try:
                return _connect_tpu()
            except (ValueError, RuntimeError, tf.errors.OpError):
                pass
        if _tf_config_workers() > 1:
            return build_strategy("multi-worker")
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "one-device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "strategy='multi-worker' needs the TF_CONFIG environment variable "
                "(cluster and task of this worker). Received: TF_CONFIG unset"
            )
        _tf_config_workers()
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        return _connect_tpu()
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ValueError(f"strategy='tpu' but no TPU was found ({e}). Received: strategy='tpu'")


def is_chief(strategy):
    """Whether this process writes files: always, except for non-chief multi-worker tasks."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


@contextlib.contextmanager
def _multi_worker_fit_workaround(model, strategy, sample_batch):
    """Make Keras 3 ``model.fit`` / ``evaluate`` work under MultiWorkerMirroredStrategy.

    Upstream: https://github.com/keras-team/keras/issues/20585 and
    https://github.com/tensorflow/tensorflow/issues/72388. Two faults in
    ``keras/src/backend/tensorflow/trainer.py`` (seen in Keras 3.5 to 3.15):

    1. ``_maybe_symbolic_build`` averages the first *input batch* across workers with
       ``strategy.reduce(..., axis=None)`` just to learn its shapes; the collective
       cross-device ops cannot reduce eager ``PerReplica`` inputs ("Attempt to convert a
       value (PerReplica...)"). We build from one local batch instead: only shapes matter.
    2. ``reduce_per_replica(..., reduction="auto")`` reduces the scalar logs of each step
       with ``strategy.reduce("MEAN", v, axis=0)``, which fails on 0-d tensors ("Invalid
       reduction dimension 0"). The mean over replicas is ``axis=None``.

    Gradients are all-reduced by the optimizer as usual; only these two reductions change.
    Everything else is plain ``model.fit``. This is the only place the package patches
    Keras, only for multi-worker runs, and only for the duration of the call.
    ``tests/test_training.py::test_two_workers_train_to_identical_weights`` pins it.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=sample_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    model._maybe_symbolic_build = maybe_symbolic_build
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        del model._maybe_symbolic_build


# ---------------------------------------------------------------------------- callbacks


def _finite(value):
    return value is not None and math.isfinite(float(value))


class LowLrUntilError(keras.callbacks.Callback):
    """The paper's ResNet-110 warm-up: release the low rate once training error < 80%.

    Checked at epoch ends (one CIFAR epoch is 391 steps; the paper says "about 400
    iterations"), which keeps resumed runs identical to uninterrupted ones.
    """

    def __init__(self, learning_rate, threshold=0.8):
        super().__init__()
        self.learning_rate = learning_rate
        self.threshold = threshold

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("accuracy")
        if self.learning_rate.holding.numpy() > 0.5 and _finite(accuracy) and 1 - accuracy < self.threshold:
            self.learning_rate.holding.assign(0.0)
            print(f"Warm-up done after epoch {epoch + 1}: training error {1 - accuracy:.3f} < {self.threshold}")


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN that also remembers where it fired, for a clear message."""

    def __init__(self):
        super().__init__()
        self.fired = None
        self.epoch = 0
        self.step_offset = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss) and self.fired is None:
            self.fired = (self.epoch, self.step_offset + batch + 1, float(loss))
        super().on_batch_end(batch, logs)


class BestModel(keras.callbacks.Callback):
    """Keep the model with the best ``monitor`` (atomically written ``.keras`` file)."""

    def __init__(self, path, monitor="val_accuracy", best=-math.inf):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if _finite(value) and value > self.best:
            self.best = float(value)
            _save_model_atomic(self.model, self.path)


class StateBackup(keras.callbacks.Callback):
    """Atomic backup of everything an exact resume needs (see the module docstring).

    Saved every ``every_steps`` steps inside an epoch and at each epoch end (after
    validation and the other callbacks). Never saves a state reached through a NaN loss.
    Only the chief writes; all workers read the chief's backup when resuming.
    """

    def __init__(self, path, *, every_steps, steps_per_epoch, learning_rate, write, clock):
        super().__init__()
        self.path = path
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.learning_rate = learning_rate
        self.write = write
        self.clock = clock  # callable -> dict merged into the metadata (time, images)
        self.epoch = 0
        self.step_offset = 0
        self.broken = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not _finite((logs or {}).get("loss", 0.0)):
            self.broken = True
        step = self.step_offset + batch + 1
        if self.every_steps and step % self.every_steps == 0 and step < self.steps_per_epoch:
            self._save(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        if not _finite((logs or {}).get("loss", 0.0)):
            self.broken = True
        self._save(epoch + 1, 0)

    def _save(self, epoch, step):
        if self.broken or not self.write:
            return
        meta = dict(epoch=epoch, step=step, lr_holding=float(self.learning_rate.holding.numpy()))
        meta.update(self.clock(epoch, step))
        save_state(self.path, self.model, meta)


# -------------------------------------------------------------------------- run folders


def _atomic_target(path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")


def _replace_fsync(tmp, path):
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path, obj):
    tmp = _atomic_target(path)
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    _replace_fsync(tmp, path)


def _save_model_atomic(model, path):
    tmp = _atomic_target(path) + ".keras"
    model.save(tmp)
    _replace_fsync(tmp, path)


def _model_and_optimizer_variables(model):
    variables = list(model.variables)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    return variables


def save_state(path, model, meta):
    """Write model + optimizer variables and ``meta`` to ``path`` (.npz) atomically."""
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(_model_and_optimizer_variables(model))}
    tmp = _atomic_target(path)
    with open(tmp, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
    _replace_fsync(tmp, path)


def load_state(path, model):
    """Assign the variables saved by :func:`save_state` (optimizer must be built); returns meta."""
    variables = _model_and_optimizer_variables(model)
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["__meta__"]))
        names = sorted(k for k in saved.files if k != "__meta__")
        if len(names) != len(variables):
            raise ValueError(
                f"The backup {path} holds {len(names)} variables but the model and optimizer "
                f"have {len(variables)}: it belongs to another model. Use overwrite=True."
            )
        for variable, name in zip(variables, names):
            value = saved[name]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"The backup {path} does not match the model ({variable.path}: "
                    f"{tuple(value.shape)} saved, {tuple(variable.shape)} now). Use overwrite=True."
                )
            variable.assign(value)
    return meta


def read_history(path):
    """history.csv as {column: [values]} (empty dict when missing)."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history = {}
    for row in rows:
        for key, value in row.items():
            history.setdefault(key, []).append(int(value) if key == "epoch" else float(value))
    return history


def _truncate_history(path, epochs_done):
    """Keep only rows of epochs before ``epochs_done`` (a killed run may have written more)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",", 1)[0]) < epochs_done]
    tmp = _atomic_target(path)
    with open(tmp, "w", newline="") as f:
        f.writelines(kept)
    _replace_fsync(tmp, path)


def plot_history(history, path):
    """Loss and accuracy, train and validation, to a PNG (matplotlib, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    epochs = [e + 1 for e in history.get("epoch", [])]
    for axis, key in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + key in history:
                axis.plot(epochs, history[prefix + key], marker=".", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    tmp = _atomic_target(path) + ".png"
    figure.savefig(tmp, dpi=100)
    _replace_fsync(tmp, path)


def _export(model, export_root, run_name, *, class_names, preprocessing):
    """Export a TF Serving SavedModel to ``export_root/run_name/<version>`` via keras_resnet.export
    (which writes a staging folder and renames it: a killed export leaves no version)."""
    import importlib

    try:
        export_module = importlib.import_module("keras_resnet.export")
    except ModuleNotFoundError as e:
        if e.name != "keras_resnet.export":
            raise
        print("keras_resnet.export is not available: skipping the SavedModel export (model.keras is written).")
        return None
    return export_module.export_saved_model(
        model, os.path.join(export_root, run_name), class_names=class_names, preprocessing=preprocessing
    )


def _versions():
    import platform

    return dict(
        tensorflow=tf.__version__,
        keras=keras.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
    )


# ------------------------------------------------------------------------------- train


def _is_int(value, low=1):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low


def _check_train_args(args):
    """Validate what can be checked without data, devices or models (fast, no side effects)."""
    from keras_resnet.models import model_info

    model_info(args["model"])  # ValueError naming the model when unknown
    for key, low in (("epochs", 1), ("batch_size", 1), ("image_size", 8), ("backup_steps", 0), ("seed", 0)):
        value = args[key]
        if value is not None and not _is_int(value, low):
            raise ValueError(f"{key} must be an integer >= {low}. Received: {key}={value!r}")
    if args["strategy"] not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={args['strategy']!r}")
    if args["schedule"] is not None and args["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}. Received: schedule={args['schedule']!r}")
    from keras_resnet.hardware import PRECISIONS

    if args["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={args['precision']!r}")
    if args["jit_compile"] not in ("auto", "on", "off", True, False):
        raise ValueError(
            f"jit_compile must be 'auto', 'on' or 'off'. Received: jit_compile={args['jit_compile']!r}"
        )
    if args["augmentation"] is not None:
        from keras_resnet.data import AUGMENTATIONS

        if args["augmentation"] not in AUGMENTATIONS:
            raise ValueError(
                f"augmentation must be one of {AUGMENTATIONS}. Received: augmentation={args['augmentation']!r}"
            )
    if args["data_dir"] is not None and not os.path.isdir(args["data_dir"]):
        raise ValueError(f"data_dir must be an existing folder. Received: data_dir={args['data_dir']!r}")
    if not isinstance(args["dataset"], str) or not args["dataset"]:
        raise ValueError(f"dataset must be a dataset name. Received: dataset={args['dataset']!r}")
    if not isinstance(args["model_options"], dict):
        raise ValueError(f"model_options must be a dict. Received: model_options={args['model_options']!r}")
    output = args["output"]
    if output is not None and os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"output must be a folder, not a file. Received: output={output!r}")
    bounds = (("lr", 0, math.inf), ("label_smoothing", 0, 1), ("weight_decay", 0, 1), ("momentum", 0, 1))
    for key, low, high in bounds:
        value = args[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if value is not None and not (ok and low <= value < high and (key != "lr" or value > 0)):
            interval = f"{'(' if key == 'lr' else '['}{low}, {high})"
            raise ValueError(f"{key} must be a number in {interval}. Received: {key}={value!r}")
    warmup = args["warmup_epochs"]
    if warmup is not None and warmup != PAPER_WARMUP and not (isinstance(warmup, (int, float)) and warmup >= 0):
        raise ValueError(
            f"warmup_epochs must be a number >= 0 or {PAPER_WARMUP!r}. Received: warmup_epochs={warmup!r}"
        )


def _recipe_family(dataset_name, image_size):
    if dataset_name == "digits":
        return "digits"
    return "cifar" if image_size <= 64 else "imagenet"


def _run_folder_state(output, overwrite):
    """'new' | 'finished' | 'resume' | 'restart' (started, nothing backed up yet)."""
    if not os.path.isdir(output) or not [n for n in os.listdir(output) if not n.startswith(".")]:
        return "new"  # (hidden names: another worker's temporary files)
    if not os.path.exists(os.path.join(output, "config.json")):
        raise ValueError(
            "output holds files but is not a run folder (no config.json); choose another. "
            f"Received: output={output!r}"
        )
    if overwrite:
        return "overwrite"
    if os.path.exists(os.path.join(output, "metrics.json")):
        return "finished"
    if os.path.exists(os.path.join(output, "backup", "state.npz")):
        return "resume"
    return "restart"


def _build_model(name, *, image_size, num_classes, precision, zero_init_residual, sync_bn, options):
    from keras_resnet import get_model

    kwargs = dict(weights=None, input_shape=(image_size, image_size, 3), classes=num_classes)
    if zero_init_residual:
        kwargs["zero_init_residual"] = True
    if sync_bn:
        kwargs["synchronized_bn"] = True
    # Under a mixed policy keras_resnet's builders keep the classifier Dense and its
    # softmax in float32, so the loss sees float32 probabilities.
    kwargs.update(options)
    model = get_model(name, **kwargs)
    if precision != "fp32" and model.output.dtype != "float32":
        raise ValueError(f"{name} under {precision} does not end in float32. Received: precision={precision!r}")
    return model


def train(
    model="ResNet20",
    *,
    dataset="digits",
    data_dir=None,
    tfds_data_dir=None,
    manual_dir=None,
    epochs=None,
    batch_size=None,
    image_size=None,
    output=None,
    strategy="auto",
    precision="auto",
    jit_compile="auto",
    deterministic=False,
    seed=0,
    lr=None,
    schedule=None,
    warmup_epochs=None,
    label_smoothing=None,
    weight_decay=None,
    momentum=0.9,
    nesterov=False,
    augmentation=None,
    zero_init_residual=False,
    sync_bn=False,
    model_options=None,
    backup_steps=None,
    overwrite=False,
    export=True,
    export_dir="saved_models",
    verbose="auto",
):
    """Train ``model`` (any name of :func:`keras_resnet.list_models`) and write a run folder.

    Options left as None take the recipe of the dataset family (``RECIPES``: "digits",
    "cifar" for images up to 64 px, "imagenet" above). ``batch_size`` is per replica; the
    global batch is ``batch_size * replicas`` and ``lr`` (for a batch of 256) is scaled
    to it. ``warmup_epochs`` is a number of linear warm-up epochs or ``"paper"`` (the
    ResNet-110 trick, the default for CIFAR models of depth >= 110).
    ``model_options`` are passed to :func:`keras_resnet.get_model` (``width_multiplier``,
    ``stochastic_depth_rate``, ...). ``backup_steps``: steps between mid-epoch backups
    (0: epoch ends only; default about 4 per epoch).

    Rerunning with the same ``output`` resumes a killed run from its last backup, and
    returns a finished run without training unless ``overwrite=True``.

    Returns:
        ``(history, model)``: ``history`` maps ``epoch``, ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``, ... to lists over all epochs of the run.
    """
    model_name = model
    args = dict(locals())
    args["model_options"] = {} if model_options is None else model_options
    _check_train_args(args)
    model_options = args["model_options"]
    from keras_resnet.data import load_data
    from keras_resnet.hardware import resolve_jit_compile, resolve_precision
    from keras_resnet.models import model_info

    info = model_info(model_name)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if output is None:
        source = os.path.basename(os.path.normpath(data_dir)) if data_dir else dataset
        output = os.path.join("runs", f"{model_name}-{source}-{stamp}")
    folder = _run_folder_state(output, overwrite)
    if folder == "finished":
        print(
            f"{output} holds a finished run (metrics.json): not training again. "
            "Pass overwrite=True (--overwrite) or another output folder to train anew."
        )
        return read_history(os.path.join(output, "history.csv")), keras.saving.load_model(
            os.path.join(output, "model.keras"), compile=False
        )

    # ---- resolve everything (devices, data) before touching the run folder
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    dist = build_strategy(strategy)
    precision = resolve_precision(precision)
    jit = resolve_jit_compile(jit_compile)
    data = load_data(dataset, data_dir=data_dir, tfds_data_dir=tfds_data_dir, manual_dir=manual_dir, seed=seed)
    image_size = image_size or data.image_size
    family = _recipe_family(data.name if data_dir is None else "", image_size)
    recipe = dict(RECIPES[family])
    if family == "cifar" and info.get("family") == "cifar" and info.get("depth", 0) >= 110:
        recipe["warmup_epochs"] = PAPER_WARMUP
    given = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        weight_decay=weight_decay,
    )
    recipe.update({k: v for k, v in given.items() if v is not None})
    if warmup_epochs is None and recipe["warmup_epochs"] != PAPER_WARMUP:  # short runs: shorter warm-up
        recipe["warmup_epochs"] = min(recipe["warmup_epochs"], recipe["epochs"] / 4)
    model_options = {**recipe.pop("model_options", {}), **model_options}
    _check_recipe(
        lr=recipe["lr"],
        schedule=recipe["schedule"],
        warmup_epochs=recipe["warmup_epochs"],
        label_smoothing=recipe["label_smoothing"],
        weight_decay=recipe["weight_decay"],
        momentum=momentum,
        epochs=recipe["epochs"],
    )
    epochs = recipe["epochs"]
    replicas = dist.num_replicas_in_sync
    global_batch = recipe["batch_size"] * replicas
    steps = data.steps_per_epoch(global_batch)
    if steps < 1:
        raise ValueError(
            f"batch_size x replicas = {global_batch} is larger than the {data.num_train} training "
            f"images. Received: batch_size={recipe['batch_size']}"
        )
    if backup_steps is None:
        backup_steps = max(1, steps // 4)
    preprocessing = info["preprocessing"]
    augmentation = augmentation or data.default_augmentation
    chief = is_chief(dist)
    config = dict(
        model=model_name,
        model_info=info,
        dataset=data.name,
        data_dir=data_dir,
        tfds_data_dir=tfds_data_dir,
        class_names=list(data.class_names),
        num_classes=len(data.class_names),
        num_train=data.num_train,
        num_val=data.num_val,
        num_test=data.num_test,
        image_size=image_size,
        preprocessing=preprocessing,
        augmentation=augmentation,
        recipe_family=family,
        epochs=epochs,
        batch_size=recipe["batch_size"],
        global_batch_size=global_batch,
        steps_per_epoch=steps,
        lr_per_256=recipe["lr"],
        lr=recipe["lr"] * global_batch / 256.0,
        schedule=recipe["schedule"],
        warmup_epochs=recipe["warmup_epochs"],
        label_smoothing=recipe["label_smoothing"],
        weight_decay=recipe["weight_decay"],
        weight_decay_applies_to="conv and dense kernels (L2 in the loss); not BatchNorm, not biases",
        momentum=momentum,
        nesterov=nesterov,
        zero_init_residual=zero_init_residual,
        sync_bn=sync_bn,
        model_options=model_options,
        strategy=strategy,
        strategy_class=type(dist).__name__,
        replicas=replicas,
        precision=precision,
        jit_compile=jit,
        deterministic=deterministic,
        seed=seed,
        backup_steps=backup_steps,
        output=output,
        versions=_versions(),
        started=stamp,
    )
    config_path = os.path.join(output, "config.json")
    backup_path = os.path.join(output, "backup", "state.npz")
    history_path = os.path.join(output, "history.csv")
    if folder == "resume":
        with open(config_path) as f:
            previous = json.load(f)
        changed = {k: (previous.get(k), config[k]) for k in _IDENTITY_KEYS if previous.get(k) != config[k]}
        if changed:
            detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"output holds a run started with other options ({detail}); rerun with the same "
                f"options, overwrite=True (--overwrite) or another output. Received: output={output!r}"
            )
        config["started"] = previous.get("started", stamp)
    if chief:
        if folder == "overwrite":
            shutil.rmtree(output)
        if folder == "restart" and os.path.exists(history_path):
            os.remove(history_path)
        write_json_atomic(config_path, config)  # first: marks the folder as a run folder
        os.makedirs(os.path.join(output, "backup"), exist_ok=True)

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.mixed_precision.DTypePolicy(_policy_name(precision)))
    try:
        with dist.scope():
            net = _build_model(
                model_name,
                image_size=image_size,
                num_classes=len(data.class_names),
                precision=precision,
                zero_init_residual=zero_init_residual,
                # one replica: plain BatchNorm already sees the whole batch (and Keras'
                # synchronized variant differs from it numerically there)
                sync_bn=sync_bn and replicas > 1,
                options=model_options,
            )
            learning_rate = compile_model(
                net,
                steps_per_epoch=steps,
                epochs=epochs,
                global_batch_size=global_batch,
                num_classes=len(data.class_names),
                lr=recipe["lr"],
                schedule=recipe["schedule"],
                warmup_epochs=recipe["warmup_epochs"],
                label_smoothing=recipe["label_smoothing"],
                weight_decay=recipe["weight_decay"],
                momentum=momentum,
                nesterov=nesterov,
                jit_compile=jit,
                strategy=dist,
            )
            net.optimizer.build(net.trainable_variables)
        return _fit(
            net,
            learning_rate,
            data=data,
            dist=dist,
            chief=chief,
            config=config,
            resume=folder == "resume",
            backup_steps=backup_steps,
            export=export,
            export_dir=export_dir,
            verbose=verbose,
        )
    finally:
        keras.config.set_dtype_policy(policy)


def _policy_name(precision):
    from keras_resnet.hardware import keras_policy_name

    return keras_policy_name(precision)


def _fit(net, learning_rate, *, data, dist, chief, config, resume, backup_steps, export, export_dir, verbose):
    output = config["output"]
    epochs, steps, global_batch = config["epochs"], config["steps_per_epoch"], config["global_batch_size"]
    backup_path = os.path.join(output, "backup", "state.npz")
    history_path = os.path.join(output, "history.csv")
    start_epoch, start_step, meta = 0, 0, {}
    if resume:
        meta = load_state(backup_path, net)
        start_epoch, start_step = meta["epoch"], meta["step"]
        learning_rate.holding.assign(meta.get("lr_holding", 0.0))
        print(f"Resuming {output} from its backup: epoch {start_epoch + 1}, step {start_step} of {steps}.")
        if chief:
            _truncate_history(history_path, start_epoch)
    time_before = meta.get("train_time_s", 0.0)
    began = time.perf_counter()

    def clock(epoch, step):
        return dict(train_time_s=time_before + time.perf_counter() - began)

    nan_guard = NaNGuard()
    backup = StateBackup(
        backup_path,
        every_steps=backup_steps,
        steps_per_epoch=steps,
        learning_rate=learning_rate,
        write=chief,
        clock=clock,
    )
    callbacks = [nan_guard]
    if learning_rate.hold_low:
        callbacks.append(LowLrUntilError(learning_rate))
    if chief:
        previous = read_history(history_path).get("val_accuracy", [])
        callbacks += [
            keras.callbacks.CSVLogger(history_path, append=True),
            BestModel(os.path.join(output, "best.keras"), best=max(previous, default=-math.inf)),
            keras.callbacks.TensorBoard(os.path.join(output, "logs"), write_graph=False, profile_batch=0),
        ]
    callbacks.append(backup)  # last: a backup follows every other callback's epoch-end work

    common = dict(image_size=config["image_size"], preprocessing=config["preprocessing"])
    evaluation = dict(common, augmentation=config["augmentation"])
    multi_worker = isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy)

    def train_data(first_epoch, first_step, end_epoch):
        dataset = data.train_dataset(
            global_batch,
            augmentation=config["augmentation"],
            seed=config["seed"],
            start_epoch=first_epoch,
            start_step=first_step,
            epochs=end_epoch,
            **common,
        )
        if multi_worker:  # every worker builds the same batches and keeps its share
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
        return dataset

    val_data = data.eval_dataset("val" if data.num_val else "test", global_batch, **evaluation)
    sample = next(iter(train_data(0, 0, 1))) if multi_worker else None
    histories = []
    images = 0
    with _multi_worker_fit_workaround(net, dist, sample):
        phases = []
        if start_epoch < epochs and start_step > 0:  # finish the interrupted epoch first
            phases.append((start_epoch, start_step, start_epoch + 1))
            start_epoch += 1
        if start_epoch < epochs:
            phases.append((start_epoch, 0, epochs))
        for first_epoch, first_step, end_epoch in phases:
            nan_guard.step_offset = backup.step_offset = first_step
            result = net.fit(
                train_data(first_epoch, first_step, end_epoch),
                initial_epoch=first_epoch,
                epochs=end_epoch,
                steps_per_epoch=steps - first_step if first_step else steps,
                validation_data=val_data,
                callbacks=callbacks,
                shuffle=False,  # the dataset is shuffled, per (seed, epoch)
                verbose=verbose,
            )
            histories.append(result.history)
            images += global_batch * (steps * (end_epoch - first_epoch) - first_step)
            if nan_guard.fired or net.stop_training:
                break
        train_time = time.perf_counter() - began
        if nan_guard.fired:
            epoch, step, loss = nan_guard.fired
            raise TrainingDiverged(
                f"Training stopped: the loss became {loss} at epoch {epoch + 1}, step {step}. "
                f"{output}/backup keeps the last state before it. Try a lower learning rate "
                f"(lr={config['lr_per_256']} per 256 images now), precision='fp32', or a warm-up."
            )
        test = net.evaluate(data.eval_dataset("test", global_batch, **evaluation), return_dict=True, verbose=0)

    history = read_history(history_path) if chief else _merge_histories(histories)
    metrics = dict(
        test_accuracy=float(test["accuracy"]),
        test_loss=float(test["loss"]),
        epochs=epochs,
        train_time_s=round(time_before + train_time, 3),
        images_per_sec=round(images / train_time, 2) if images and train_time > 0 else None,
        resumed_from=dict(epoch=meta["epoch"], step=meta["step"]) if resume else None,
    )
    if "top5" in test:
        metrics["test_top5"] = float(test["top5"])
    print(
        f"Test top-1 {metrics['test_accuracy']:.4f}"
        + (f", top-5 {metrics['test_top5']:.4f}" if "test_top5" in metrics else "")
        + f" after {epochs} epochs ({metrics['train_time_s']:.0f} s of training)."
    )
    if chief:
        _save_model_atomic(net, os.path.join(output, "model.keras"))
        metrics["model_path"] = os.path.join(output, "model.keras")
        metrics["export_path"] = None
        if export:
            metrics["export_path"] = _export(
                net,
                export_dir,
                os.path.basename(os.path.normpath(output)),
                class_names=config["class_names"],
                preprocessing=config["preprocessing"],
            )
            if metrics["export_path"]:
                print(f"Exported a SavedModel to {metrics['export_path']}")
        config["export_path"] = metrics["export_path"]
        write_json_atomic(os.path.join(output, "config.json"), config)
        if history:
            plot_history(history, os.path.join(output, "history.png"))
        write_json_atomic(os.path.join(output, "metrics.json"), metrics)  # last: marks the run finished
        print(f"Run folder: {output}")
    return history, net


def _merge_histories(histories):
    merged = {}
    for history in histories:
        for key, values in history.items():
            merged.setdefault(key, []).extend(values)
    return merged


# ---------------------------------------------------------------------------- evaluate


def evaluate(
    run_or_model,
    *,
    dataset=None,
    data_dir=None,
    tfds_data_dir=None,
    split="test",
    batch_size=64,
    preprocessing=None,
    image_size=None,
):
    """Top-1 / top-5 accuracy of a run folder, a ``.keras`` file or a named model.

    ``run_or_model``: a run folder (its ``model.keras``, dataset, image size and
    preprocessing from ``config.json``), a ``.keras`` file (inside a run folder or with
    ``preprocessing`` and ``dataset`` given), or a name from :func:`keras_resnet.list_models`
    with ImageNet weights. Returns ``{"top1", "top5" (more than 5 classes), "loss", "split",
    "dataset", "num_images"}``.
    """
    from keras_resnet.models import list_models, model_info

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
    if not _is_int(batch_size):
        raise ValueError(f"batch_size must be an integer >= 1. Received: batch_size={batch_size!r}")
    if image_size is not None and not _is_int(image_size, 8):
        raise ValueError(f"image_size must be an integer >= 8. Received: image_size={image_size!r}")
    config = {}
    path = str(run_or_model)
    names = {m["name"] for m in list_models()}
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            raise ValueError(f"run_or_model is a folder without config.json. Received: run_or_model={path!r}")
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        path = os.path.join(path, "model.keras")
        if not os.path.exists(path):
            raise ValueError(
                f"the run has no model.keras yet (not finished). Received: run_or_model={run_or_model!r}"
            )
    elif path.endswith(".keras") and os.path.isfile(path):
        sibling = os.path.join(os.path.dirname(path), "config.json")
        if os.path.exists(sibling):
            with open(sibling) as f:
                config = json.load(f)
    elif path in names:
        info = model_info(path)
        config = dict(preprocessing=info["preprocessing"], image_size=info["input_size"], dataset=dataset)
    else:
        raise ValueError(
            f"run_or_model must be a run folder, a .keras file or a model name. Received: run_or_model={path!r}"
        )
    preprocessing = preprocessing or config.get("preprocessing")
    if preprocessing is None:
        raise ValueError(
            "preprocessing is needed for a .keras file outside a run folder. Received: preprocessing=None"
        )
    dataset = dataset or config.get("dataset")
    data_dir = data_dir or (config.get("data_dir") if not dataset or dataset == config.get("dataset") else None)
    if not dataset and not data_dir:
        raise ValueError("dataset is needed for a .keras file outside a run folder. Received: dataset=None")
    from keras_resnet.data import load_data

    seed = config.get("seed", 0)
    data = load_data(dataset or "digits", data_dir=data_dir, tfds_data_dir=tfds_data_dir, seed=seed)
    if path in names:
        from keras_resnet import get_model

        net = get_model(path, weights="imagenet")
    else:
        net = keras.saving.load_model(path, compile=False)
    classes = int(net.output_shape[-1])
    if classes != len(data.class_names):
        raise ValueError(
            f"the model predicts {classes} classes but {data.name} has {len(data.class_names)}. "
            f"Received: dataset={dataset!r}"
        )
    image_size = image_size or config.get("image_size") or net.input_shape[1] or data.image_size
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="top1")]
    if classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    net.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=metrics)
    eval_data = data.eval_dataset(split, batch_size, image_size=image_size, preprocessing=preprocessing)
    result = net.evaluate(eval_data, return_dict=True, verbose=0)
    result = {k: float(v) for k, v in result.items()}
    result.update(split=split if split == "test" or data.num_val else "test", dataset=data.name,
                  num_images=data.num_test if split == "test" or not data.num_val else data.num_val)
    return result


# --------------------------------------------------------------------------------- CLI


def _number_or_paper(text):
    if text == PAPER_WARMUP:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or {PAPER_WARMUP!r}, got {text!r}")


def _model_option(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass  # a plain string
    return key, value


def _train_parser(prog):
    p = argparse.ArgumentParser(prog=prog, description="Train a ResNet with model.fit and write a run folder.")
    p.add_argument("--model", default="ResNet20", help="any name of `keras-resnet list` (default ResNet20)")
    p.add_argument("--dataset", default="digits", help="digits (bundled) or a tfds image-classification name")
    p.add_argument("--data-dir", help="folder of class subfolders (or train/ test/ [val/] split folders)")
    p.add_argument("--tfds-data-dir", help="tfds data folder")
    p.add_argument("--manual-dir", help="tfds manual download folder (imagenet2012)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per replica; the global batch is this x replicas")
    p.add_argument("--image-size", type=int)
    p.add_argument("--output", help="run folder (default runs/<model>-<dataset>-<time>)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "mixed_float16", "mixed_bfloat16"))
    p.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--deterministic", action="store_true", help="deterministic ops: resumed runs end bit-equal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, help="learning rate for a global batch of 256 (scaled linearly)")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--warmup-epochs", type=_number_or_paper, help="linear warm-up epochs, or 'paper'")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--weight-decay", type=float, help="on conv/dense kernels only")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--augmentation", help="cifar | imagenet | none (default: the dataset's)")
    p.add_argument("--zero-init-residual", action="store_true", help="zero gamma in each block's last BN")
    p.add_argument("--sync-bn", action="store_true", help="BatchNorm statistics over all replicas")
    p.add_argument("--model-option", type=_model_option, action="append", default=[], metavar="KEY=VALUE",
                   help="extra get_model option, e.g. width_multiplier=0.5 (repeatable)")
    p.add_argument("--backup-steps", type=int, help="steps between mid-epoch backups (0: epoch ends only)")
    p.add_argument("--overwrite", action="store_true", help="train anew even if output holds a run")
    p.add_argument("--no-export", dest="export", action="store_false", help="skip the SavedModel export")
    p.add_argument("--export-dir", default="saved_models")
    p.add_argument("--verbose", default="auto", choices=("auto", "0", "1", "2"))
    return p


def _evaluate_parser(prog):
    p = argparse.ArgumentParser(prog=prog, description="Top-1/top-5 accuracy of a run, a .keras file or a model.")
    p.add_argument("run_or_model", help="run folder, .keras file, or model name (ImageNet weights)")
    p.add_argument("--dataset")
    p.add_argument("--data-dir")
    p.add_argument("--tfds-data-dir")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int)
    p.add_argument("--preprocessing", choices=("caffe", "tf", "torch"))
    return p


def cli_main(command, argv):
    """``keras-resnet train ...`` / ``keras-resnet evaluate ...``; returns the exit status."""
    prog = f"keras-resnet {command}"
    parser = {"train": _train_parser, "evaluate": _evaluate_parser}[command](prog)
    try:
        args = vars(parser.parse_args(argv))
    except SystemExit as e:  # --help, or argparse's own usage error (status 2)
        return int(e.code or 0)
    try:
        if command == "train":
            args["model_options"] = dict(args.pop("model_option"))
            verbose = args.pop("verbose")
            args["verbose"] = verbose if verbose == "auto" else int(verbose)
            train(args.pop("model"), **args)
        else:
            result = evaluate(args.pop("run_or_model"), **args)
            line = f"{result['dataset']} {result['split']} ({result['num_images']} images): "
            line += f"top-1 {result['top1']:.4f}"
            if "top5" in result:
                line += f"  top-5 {result['top5']:.4f}"
            print(line)
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return 0
