"""The run folder: what a training run leaves on disk, and how a rerun finds it again.

    runs/ResNet20-digits-20250101-120000/
        config.json    the TrainConfig (every resolved option) and the facts of the run
        history.csv    one row per epoch (appended across resumes, never repeated); ``lr``: the
                       rate of the epoch's last step
        metrics.json   test top-1/top-5, epochs, time, images/s, export path: marks it finished
        history.png    loss and accuracy curves, train and validation; the learning rate
                       (every phase's schedule, a dashed line where phase 2 begins)
        model.keras    the final model;  best.keras  the best by validation accuracy
        logs/          TensorBoard
        backup/        state.npz: weights, optimizer, RNG states, epoch and step

Every file is written atomically (:mod:`keras_resnet.utils`): a killed run leaves each
file whole or absent. The SavedModel goes beside the run, to
``saved_models/<run name>/<version>/`` (:data:`keras_resnet.export.DEFAULT_EXPORT_ROOT`).
"""

import csv
import glob
import json
import os

import numpy as np

from keras_resnet.utils import atomic_path, atomic_write, fail, read_json

RUNS = "runs"  # the default parent of run folders
CONFIG, METRICS, HISTORY, BACKUP = "config.json", "metrics.json", "history.csv", os.path.join("backup", "state.npz")
MODEL = "model.keras"  # the final model; best.keras the best by validation accuracy


def save_model_atomic(model, path):
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _model_and_optimizer_variables(model):
    variables = list(model.variables)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    return variables


def save_state(path, model, meta):
    """Write model + optimizer variables and ``meta`` to ``path`` (.npz) atomically."""
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(_model_and_optimizer_variables(model))}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)


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


def read_meta(path):
    """The metadata of the backup at ``path`` (epoch, step, phase, ...), or None when there
    is none whole."""
    try:
        with np.load(path) as saved:
            return json.loads(str(saved["__meta__"]))
    except (OSError, ValueError, KeyError):
        return None


def read_history(path):
    """history.csv as {column: [values]} (empty dict when missing). Keras' CSVLogger
    writes ``val_*`` columns of "NA" when there is no validation data: those are left out."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history = {}
    for row in rows:
        for key, value in row.items():
            history.setdefault(key, []).append(int(value) if key == "epoch" else _number(value))
    return {k: v for k, v in history.items() if any(x is not None for x in v)}


def _number(text):
    return None if text in ("NA", "") else float(text)


def truncate_history(path, epochs_done):
    """Keep only rows of epochs before ``epochs_done`` (a killed run may have written more)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",", 1)[0]) < epochs_done]
    atomic_write(path, "".join(kept))


def plot_history(history, path, *, title=None, learning_rate=None, phase_starts=()):
    """Loss, accuracy and the learning rate of a run to a PNG (matplotlib, no global backend);
    returns the figure.

    ``title`` names the run (model and data). The loss axis is logarithmic, so one spike
    (a validation loss of 15 among values near 1) does not flatten the other curves.
    ``learning_rate``: ``(epochs, rates)``, the schedule sampled over the run, x as the
    epochs done (0 to the run's epochs; a third panel, left out when None). ``phase_starts``:
    the epochs (from 0) where a fine-tuning phase after the first begins: a dashed vertical
    line on every panel, labelled "phase 2", ... on the learning-rate panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = ("loss", "accuracy") + (("learning rate",) if learning_rate is not None else ())
    figure = Figure(figsize=(5 * len(panels), 4))
    FigureCanvasAgg(figure)
    epochs = [e + 1 for e in history.get("epoch", [])]
    axes = figure.subplots(1, len(panels))
    for axis, key in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + key in history:
                axis.plot(epochs, history[prefix + key], marker=".", label=label)
        axis.set_title(key)
        axis.legend()
    values = [v for k in ("loss", "val_loss") for v in history.get(k, []) if v is not None]
    if values and min(values) > 0:
        axes[0].set_yscale("log")
        axes[0].set_title("loss (log scale)")
    if learning_rate is not None:
        steps, rates = learning_rate
        axes[2].plot(steps, rates)  # epochs done: the loss of epoch e (from 0) is drawn at e + 1
        axes[2].set_title("learning rate")
    for number, start in enumerate(phase_starts, start=2):
        for axis in axes:
            axis.axvline(start, color="grey", linestyle="--", linewidth=1)
        axes[-1].annotate(f"phase {number}", (start, 1.0), xycoords=("data", "axes fraction"),
                          xytext=(3, -12), textcoords="offset points", color="grey")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)
    return figure


def folder_state(output, overwrite):
    """'new' | 'overwrite' | 'finished' | 'resume' | 'restart' (started, nothing backed up)."""
    if not os.path.isdir(output) or not [n for n in os.listdir(output) if not n.startswith(".")]:
        return "new"  # (hidden names: another worker's temporary files)
    if not os.path.exists(os.path.join(output, CONFIG)):
        raise ValueError(
            "output holds files but is not a run folder (no config.json); choose another. "
            f"Received: output={output!r}"
        )
    if overwrite:
        return "overwrite"
    if os.path.exists(os.path.join(output, METRICS)):
        return "finished"
    if os.path.exists(os.path.join(output, BACKUP)):
        return "resume"
    return "restart"


def read_config(output):
    """A run folder's config.json, as a dict."""
    return read_json(os.path.join(output, CONFIG))


def newest_unfinished(parent, prefix, config):
    """The newest run folder ``parent/prefix*`` that is unfinished (no metrics.json) and was
    started with the same options as ``config`` (:meth:`TrainConfig.changes` is empty)."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(parent), glob.escape(prefix) + "*", CONFIG)):
        folder = os.path.dirname(path)
        if os.path.exists(os.path.join(folder, METRICS)):
            continue
        try:
            previous = read_config(folder)
        except (OSError, ValueError):
            continue
        if not config.changes(previous):
            found.append((os.path.getmtime(path), folder))
    return max(found)[1] if found else None


def run_files(run_dir, *, argument="run_dir"):
    """``(model path, config)`` of a finished run folder; ``ValueError`` naming ``argument``
    when ``run_dir`` has no config.json (not a run) or no model.keras (not finished)."""
    run_dir = os.fspath(run_dir)
    if not os.path.isfile(os.path.join(run_dir, CONFIG)):
        fail(argument, run_dir, f"a run folder (this folder has no {CONFIG})")
    if not os.path.isfile(os.path.join(run_dir, MODEL)):
        fail(argument, run_dir, f"a finished run (it has no {MODEL} yet)")
    return os.path.join(run_dir, MODEL), read_config(run_dir)


def load_run(run_dir, *, argument="run_dir"):
    """``(model, config)`` of a finished run folder: its model.keras (not compiled) and
    config.json."""
    path, config = run_files(run_dir, argument=argument)
    import keras

    from keras_resnet.saving import register_serializables

    register_serializables()  # keras_resnet's layers and recipe, whoever imported Keras first
    return keras.saving.load_model(path, compile=False), config


def versions():
    import platform

    import keras
    import tensorflow as tf

    return dict(tensorflow=tf.__version__, keras=keras.__version__, numpy=np.__version__,
                python=platform.python_version())
