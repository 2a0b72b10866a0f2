"""The fit of one training run: restore, callbacks, at most two ``model.fit`` phases, test,
and the files that mark the run finished. Stops cleanly on SIGINT / SIGTERM, a NaN loss or
a lost worker, each with one message that says where the run stands and how to resume.
"""

import math
import os
import time

import tensorflow as tf

import keras

from keras_resnet.errors import EXIT_ENVIRONMENT, CommandError, Stopped
from keras_resnet.training import callbacks as cb
from keras_resnet.training.finetune import recorded_eval_transform
from keras_resnet.training import run_folder as rf
from keras_resnet.training.strategy import _multi_worker_fit_workaround, is_multi_worker, lost_worker
from keras_resnet.utils import write_json_atomic


class TrainingDiverged(CommandError):
    """The loss became NaN or infinite; the run folder keeps the last good backup (exit 1)."""

    def __init__(self, message):
        super().__init__(message, exit_code=EXIT_ENVIRONMENT)


class RunStopped(Stopped):
    """SIGINT / SIGTERM stopped the run after its backup was written (exit 130 / 143)."""

    def __init__(self, message, *, signum, output, epoch, step):
        super().__init__(message, exit_code=cb.SIGNAL_EXIT.get(signum, 130))
        self.signum, self.output, self.epoch, self.step = signum, output, epoch, step


class WorkerLost(CommandError):
    """A multi-worker run lost a worker; the backup holds the last saved step (exit 1)."""

    def __init__(self, message):
        super().__init__(message, exit_code=EXIT_ENVIRONMENT)


# A test top-1 within this of the commonest class's share reads as "no better than chance".
CHANCE_MARGIN = 0.02


def python_resume_command(output):
    return f"train(...) again with the same arguments and output={output!r}"


class FitJob:
    """One run's fit: everything :func:`keras_resnet.training.loop.run` resolved, bound together."""

    def __init__(self, config, facts, data, dist, *, chief, signals, resume_command):
        self.config, self.facts, self.data, self.dist = config, facts, data, dist
        self.chief, self.signals, self.resume_command = chief, signals, resume_command
        self.output = config.output
        self.steps = facts["steps_per_epoch"]
        self.backup_path = os.path.join(self.output, rf.BACKUP)
        self.history_path = os.path.join(self.output, rf.HISTORY)
        self.saved = (0, 0)  # (epochs done, step) the backup holds

    def position(self, epoch, step):
        """Where a run stands, the way every message says it (epochs counted from 1)."""
        if step == 0:
            return f"after epoch {epoch} of {self.config.epochs}"
        return f"at epoch {epoch + 1} of {self.config.epochs}, step {step} of {self.steps}"

    def fit(self, net, learning_rate, *, resume, found, phases, phase, switch):
        """Train to the last epoch, test, and write the finished run; returns (history, net).

        ``phases`` (:func:`keras_resnet.training.finetune.plan_phases`): ``net`` is compiled
        for ``phase`` (the backup's when resuming); ``switch(phase)`` compiles it for another
        and returns that phase's schedule."""
        self.phases, self.phase, self.switch = phases, phase, switch
        meta = self._restore(net, learning_rate, resume, found)
        began = time.perf_counter()
        clock = lambda epoch, step: dict(train_time_s=meta.get("train_time_s", 0.0) + time.perf_counter() - began)  # noqa: E731
        guard = cb.NaNGuard()
        backup = cb.StateBackup(self.backup_path, every_steps=self.config.backup_steps, steps_per_epoch=self.steps,
                                learning_rate=learning_rate, write=self.chief, clock=clock, signals=self.signals,
                                phase=phase.index)
        display = cb.progress(self.config.verbose, epochs=self.config.epochs, steps_per_epoch=self.steps)
        # the rate first (before the warm-up's release, the display and history.csv), backup last
        rate = cb.LearningRateLog(learning_rate, steps_per_epoch=self.steps, first_epoch=phase.first_epoch)
        callbacks = [rate] + self._callbacks(learning_rate, guard, display) + [backup]
        multi = is_multi_worker(self.dist)
        sample = next(iter(self._train_data(0, 0, 1))) if multi else None
        try:
            with _multi_worker_fit_workaround(net, self.dist, sample):
                histories, images = self._phases(net, callbacks, (guard, backup, display), meta)
                train_time = time.perf_counter() - began
                self._check_diverged(guard)
                test = net.evaluate(self.data.eval_dataset("test", self.config.global_batch_size, **self._eval()),
                                    return_dict=True, verbose=0)
        except cb.Interrupted as e:
            raise self._stopped(e.signum, e.epoch, e.step) from None
        except tf.errors.OpError as e:
            lost = lost_worker(e, self.dist)
            if lost is None:
                raise
            raise WorkerLost(
                f"lost {lost}: the backup holds the run {self.position(*self._backup_position())}. "
                f"Restart every worker with: {self.resume_command(self.output)}") from None
        if self.signals.signum is not None:
            raise self._stopped(self.signals.signum, self.config.epochs, 0)
        metrics = self._metrics(test, meta, images, train_time)
        history = rf.read_history(self.history_path) if self.chief else _merge(histories)
        if self.chief:
            self._write_finished(net, history, metrics)
        return history, net

    def _restore(self, net, learning_rate, resume, found):
        meta = dict(epoch=0, step=0)
        if resume:
            meta = rf.load_state(self.backup_path, net)
            learning_rate.holding.assign(meta.get("lr_holding", 0.0))
            if self.chief:
                rf.truncate_history(self.history_path, meta["epoch"])
        where = f"at epoch {meta['epoch'] + 1}, step {meta['step']} of {self.steps}"
        if found:
            print(f"Resuming {self.output} {where} (the newest unfinished run with these options; "
                  "--new-run starts afresh).")
        elif resume:
            print(f"Resuming {self.output} from its backup {where}.")
        self.resumed_from = dict(epoch=meta["epoch"] + 1, step=meta["step"]) if resume else None
        self.saved = (meta["epoch"], meta["step"])
        return meta

    def _callbacks(self, learning_rate, guard, display):
        callbacks = [guard] + ([display] if display else [])
        if learning_rate.hold_low:
            callbacks.append(cb.LowLrUntilError(learning_rate))
        if self.chief:
            previous = rf.read_history(self.history_path).get("val_accuracy", [])
            callbacks.append(cb.HistoryCSV(self.history_path))
            if self.data.num_val:  # selected on validation data only, never on test
                callbacks.append(cb.BestModel(os.path.join(self.output, "best.keras"),
                                              best=max(previous, default=-math.inf)))
            callbacks += [
                keras.callbacks.TensorBoard(os.path.join(self.output, "logs"), write_graph=False, profile_batch=0),
            ]
        return callbacks

    def _eval(self):
        c = self.config
        # the run's val / test transform, the export's too (as evaluate reads it back from config.json)
        return dict(image_size=c.image_size, preprocessing=c.preprocessing, augmentation=c.augmentation,
                    eval_transform=recorded_eval_transform(self.facts))

    def _train_data(self, first_epoch, first_step, end_epoch):
        c = self.config
        dataset = self.data.train_dataset(
            c.global_batch_size, augmentation=c.augmentation, seed=c.seed, start_epoch=first_epoch,
            start_step=first_step, epochs=end_epoch, image_size=c.image_size, preprocessing=c.preprocessing)
        if is_multi_worker(self.dist):  # every worker builds the same batches and keeps its share
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
        return dataset

    def segments(self, start_epoch, start_step):
        """``[(phase, first epoch, first step, end epoch)]`` left to train: in each phase the
        rest of an interrupted epoch, then whole epochs."""
        segments = []
        for phase in self.phases:
            first = max(phase.first_epoch, start_epoch)
            if first >= phase.end_epoch:
                continue
            if first == start_epoch and start_step > 0:  # finish the interrupted epoch first
                segments.append((phase, first, start_step, first + 1))
                first += 1
            if first < phase.end_epoch:
                segments.append((phase, first, 0, phase.end_epoch))
        return segments

    def _phases(self, net, callbacks, tracked, meta):
        """Train the segments left (:meth:`segments`), compiling each new phase: (histories, images seen)."""
        guard, backup, display = tracked
        val_data = None
        if self.data.num_val:
            val_data = self.data.eval_dataset("val", self.config.global_batch_size, **self._eval())
        histories, images = [], 0
        for phase, first_epoch, first_step, end_epoch in self.segments(meta["epoch"], meta["step"]):
            if self.signals.signum is not None:
                raise cb.Interrupted(self.signals.signum, first_epoch, first_step)
            if phase.index != self.phase.index:
                learning_rate = self.switch(phase)
                self.phase, backup.phase, backup.learning_rate = phase, phase.index, learning_rate
                for callback in callbacks:
                    if isinstance(callback, (cb.LowLrUntilError, cb.LearningRateLog)):
                        callback.learning_rate = learning_rate
                    if isinstance(callback, cb.LearningRateLog):
                        callback.first_epoch = phase.first_epoch
            guard.step_offset = backup.step_offset = first_step
            if isinstance(display, cb.ProgressBar):
                display.step_offset = first_step
            result = net.fit(
                self._train_data(first_epoch, first_step, end_epoch), initial_epoch=first_epoch,
                epochs=end_epoch, steps_per_epoch=self.steps - first_step, validation_data=val_data,
                callbacks=callbacks, shuffle=False, verbose=0)  # shuffled per (seed, epoch); display above
            histories.append(result.history)
            images += self.config.global_batch_size * (self.steps * (end_epoch - first_epoch) - first_step)
            if guard.fired or net.stop_training:
                break
        return histories, images

    def _backup_position(self):
        meta = rf.read_meta(self.backup_path)
        return (meta["epoch"], meta["step"]) if meta else self.saved

    def _stopped(self, signum, epoch, step):
        import signal

        name = signal.Signals(signum).name
        if not self.chief:
            epoch, step = self._backup_position()
        return RunStopped(
            f"Stopped by {name} {self.position(epoch, step)}; the backup in "
            f"{os.path.join(self.output, 'backup')} holds it. Resume with: {self.resume_command(self.output)}",
            signum=signum, output=self.output, epoch=epoch, step=step)

    def _check_diverged(self, guard):
        if guard.fired:
            epoch, step, loss = guard.fired
            raise TrainingDiverged(
                f"Training stopped: the loss became {loss} at epoch {epoch + 1}, step {step}. "
                f"{self.output}/backup keeps the last state before it. Try a lower learning rate "
                f"(lr={self.config.lr} per 256 images now), precision='fp32', or a warm-up.")

    def _lr_curve(self):
        """``(epochs, rates)`` over the whole run: each phase's schedule (its own optimizer,
        from its first epoch), rebuilt from the phase as :func:`compile_phase` compiles it and
        drawn after any paper warm-up's hold (which ends when the training error allows)."""
        from keras_resnet.training.recipe import learning_rate_schedule

        epochs, rates = [], []
        for phase in self.phases:
            schedule = learning_rate_schedule(
                lr=phase.lr, global_batch_size=self.config.global_batch_size, steps_per_epoch=self.steps,
                epochs=phase.epochs, schedule=self.config.schedule, warmup_epochs=phase.warmup_epochs)
            schedule.holding.assign(0.0)
            x, y = _lr_curve_of(schedule, phase.epochs, self.steps)
            epochs += [phase.first_epoch + e for e in x]
            rates += y
        return epochs, rates

    def _metrics(self, test, meta, images, train_time):
        metrics = dict(
            test_accuracy=float(test["accuracy"]), test_loss=float(test["loss"]), epochs=self.config.epochs,
            train_time_s=round(meta.get("train_time_s", 0.0) + train_time, 3),
            images_per_sec=round(images / train_time, 2) if images and train_time > 0 else None,
            resumed_from=self.resumed_from)
        if "top5" in test:
            metrics["test_top5"] = float(test["top5"])
        print(f"Test top-1 {metrics['test_accuracy']:.4f}"
              + (f", top-5 {metrics['test_top5']:.4f}" if "test_top5" in metrics else "")
              + f" after {self.config.epochs} epochs ({metrics['train_time_s']:.0f} s of training).")
        chance = self.data.chance_accuracy("test") or 1.0 / len(self.facts["class_names"])
        metrics["chance_accuracy"] = round(chance, 4)
        if metrics["test_accuracy"] <= chance + CHANCE_MARGIN:
            print(f"No better than chance: test top-1 {metrics['test_accuracy']:.4f} against "
                  f"{chance:.4f} for always answering the commonest class; train longer, with more "
                  "images" + ("." if self.config.weights else ", or from pretrained --weights."))
        return metrics

    def _write_finished(self, net, history, metrics):
        c, output = self.config, self.output
        rf.save_model_atomic(net, os.path.join(output, rf.MODEL))
        metrics["model_path"] = os.path.join(output, rf.MODEL)
        metrics["export_path"] = None
        if c.export:
            from keras_resnet.export.saved_model import DEFAULT_EXPORT_ROOT, export_saved_model

            folder = os.path.abspath(os.path.join(c.export_dir or DEFAULT_EXPORT_ROOT,
                                                  os.path.basename(os.path.normpath(output))))
            metrics["export_path"] = export_saved_model(
                net, folder, class_names=self.facts["class_names"], preprocessing=c.preprocessing,
                eval_transform=recorded_eval_transform(self.facts))  # the run's own val / test transform
            print(f"Exported a SavedModel to {metrics['export_path']}")
        write_json_atomic(os.path.join(output, rf.CONFIG),
                          {**c.to_json(), **self.facts, "export_path": metrics["export_path"]})
        if history:
            rf.plot_history(history, os.path.join(output, "history.png"), learning_rate=self._lr_curve(),
                            phase_starts=[p.first_epoch for p in self.phases[1:]],
                            title=f"{c.model} on {self.data.name} ({os.path.basename(os.path.normpath(output))})")
        write_json_atomic(os.path.join(output, rf.METRICS), metrics)  # last: marks the run finished
        print(f"Run folder: {output}")


def _lr_curve_of(schedule, epochs, steps_per_epoch, points=200):
    """``(epochs, rates)``: ``schedule`` at up to ``points`` steps of the run, epochs as
    fractions from 0; None when the optimizer's rate is a constant or not a schedule."""
    import numpy as np

    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return None
    total = max(int(epochs * steps_per_epoch), 1)
    steps = np.unique(np.linspace(0, total - 1, min(points, total)).round()).astype("float32")
    rates = np.asarray(keras.ops.convert_to_numpy(schedule(steps)), dtype="float64")
    return [float(s) for s in steps / steps_per_epoch], [float(r) for r in np.broadcast_to(rates, steps.shape)]


def _merge(histories):
    merged = {}
    for history in histories:
        for key, values in history.items():
            merged.setdefault(key, []).extend(values)
    return merged
