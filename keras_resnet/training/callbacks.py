"""Callbacks of a training run: the paper's warm-up, NaN guard, best model, exact backups,
signals, and the progress display.

:class:`StateBackup` saves everything an exact resume needs every ``backup_steps`` steps
and at each epoch end. :class:`Signals` turns SIGINT / SIGTERM into a request that
``StateBackup`` honours at the next step: it saves the state there and raises
:class:`Interrupted` out of ``model.fit``. :class:`ProgressBar` and :class:`EpochLine`
number epochs over the whole run, so a resumed run reads ``Epoch 2/3``, ``Epoch 3/3``.
"""

import contextlib
import math
import signal
import sys
import threading
import time

import keras

from keras_resnet.training.run_folder import save_model_atomic, save_state

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number


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


class LearningRateLog(keras.callbacks.Callback):
    """Adds ``lr`` to each epoch's logs (so to history.csv): the rate of the epoch's last
    step under the phase's schedule. A fine-tuning phase compiles its own optimizer, whose
    schedule counts steps from ``first_epoch``, the phase's first epoch; :class:`FitJob`
    sets both when a phase begins. Keras logs no rate for a schedule; its
    ``ReduceLROnPlateau`` writes ``learning_rate`` only when it changes one."""

    def __init__(self, learning_rate, *, steps_per_epoch, first_epoch=0):
        super().__init__()
        self.learning_rate, self.steps_per_epoch, self.first_epoch = learning_rate, steps_per_epoch, first_epoch

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            step = (epoch + 1 - self.first_epoch) * self.steps_per_epoch - 1
            logs["lr"] = float(keras.ops.convert_to_numpy(self.learning_rate(step)))


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras' CSVLogger appending to history.csv, keeping the columns of a file that has
    them. Keras' logger writes each row in the order of the current logs' sorted keys under
    a header written only for a new file, so a run resumed from a history with other
    columns (one written before ``lr`` was logged) would get rows shifted under the old
    header. Here an existing header fixes the columns: a new log key is left out of that
    file, a missing one is written "NA" (as Keras writes it), and the rows stay aligned."""

    def __init__(self, filename):
        super().__init__(filename, append=True)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        with open(self.filename, newline="") as f:
            header = f.readline().strip()
        if header:
            self.keys = header.split(self.sep)[1:]  # the first column is "epoch"


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
            save_model_atomic(self.model, self.path)


class Interrupted(Exception):
    """Raised out of ``model.fit`` after a signal, once the backup holds this position."""

    def __init__(self, signum, epoch, step):
        super().__init__(f"{signal.Signals(signum).name} at epoch {epoch}, step {step}")
        self.signum, self.epoch, self.step = signum, epoch, step


class Signals:
    """While :meth:`catch` is active, SIGINT and SIGTERM only set :attr:`signum`; the
    training loop stops at the next step after saving. A second signal stops at once
    (``KeyboardInterrupt``). Handlers are installed only in the main thread."""

    def __init__(self):
        self.signum = None

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def catch(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in SIGNAL_EXIT}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class StateBackup(keras.callbacks.Callback):
    """Atomic backup of everything an exact resume needs (see :mod:`keras_resnet.training`).

    Saved every ``every_steps`` steps inside an epoch and at each epoch end (after
    validation and the other callbacks). Never saves a state reached through a NaN loss.
    Only the chief writes; all workers read the chief's backup when resuming. When
    ``signals`` caught a signal, saves at the current step and raises :class:`Interrupted`.
    """

    def __init__(self, path, *, every_steps, steps_per_epoch, learning_rate, write, clock, signals=None, phase=0):
        super().__init__()
        self.path = path
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.learning_rate = learning_rate
        self.write = write
        self.clock = clock  # callable -> dict merged into the metadata (time, images)
        self.signals = signals or Signals()
        self.epoch = 0
        self.step_offset = 0
        self.broken = False
        self.phase = phase  # the training phase the model is compiled for (finetune.Phase.index)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not _finite((logs or {}).get("loss", 0.0)):
            self.broken = True
        step = self.step_offset + batch + 1
        if self.signals.signum is not None and step < self.steps_per_epoch:
            self._save(self.epoch, step)
            raise Interrupted(self.signals.signum, self.epoch, step)
        if self.every_steps and step % self.every_steps == 0 and step < self.steps_per_epoch:
            self._save(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        if not _finite((logs or {}).get("loss", 0.0)):
            self.broken = True
        self._save(epoch + 1, 0)
        if self.signals.signum is not None:
            raise Interrupted(self.signals.signum, epoch + 1, 0)

    def _save(self, epoch, step):
        if self.broken or not self.write:
            return
        meta = dict(epoch=epoch, step=step, phase=self.phase, lr_holding=float(self.learning_rate.holding.numpy()))
        meta.update(self.clock(epoch, step))
        save_state(self.path, self.model, meta)


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbered over the whole run: ``Epoch 2/3`` and ``12/45`` steps
    for a resumed epoch (``model.fit`` alone would say ``Epoch 2/2``, ``1/33``)."""

    def __init__(self, *, epochs, steps_per_epoch):
        super().__init__()
        self.total_epochs, self.steps = epochs, steps_per_epoch
        self.step_offset = 0

    def set_params(self, params):
        super().set_params(dict(params, verbose=1))
        self.epochs, self.target = self.total_epochs, self.steps

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(self.step_offset + batch, logs)


class EpochLine(keras.callbacks.Callback):
    """One line per epoch, for logs and pipes (no backspaces): ``Epoch 3/8: loss 0.41 ...``."""

    def __init__(self, *, epochs, stream=None):
        super().__init__()
        self.epochs, self.stream = epochs, stream
        self.began = None

    def on_epoch_begin(self, epoch, logs=None):
        self.began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = " ".join(f"{k} {v:{'.4g' if k == 'lr' else '.4f'}}" for k, v in (logs or {}).items()
                          if isinstance(v, (int, float)))
        seconds = time.perf_counter() - (self.began or time.perf_counter())
        print(f"Epoch {epoch + 1}/{self.epochs}: {values} ({seconds:.0f} s)", file=self.stream or sys.stdout,
              flush=True)


def progress(verbose, *, epochs, steps_per_epoch, stream=None):
    """The display for ``verbose``: "auto" is a progress bar on a terminal and one line per
    epoch elsewhere; 1 a progress bar, 2 one line per epoch, 0 nothing."""
    if verbose == "auto":
        verbose = 1 if (stream or sys.stdout).isatty() else 2
    if verbose == 1:
        return ProgressBar(epochs=epochs, steps_per_epoch=steps_per_epoch)
    if verbose == 2:
        return EpochLine(epochs=epochs, stream=stream)
    return None
