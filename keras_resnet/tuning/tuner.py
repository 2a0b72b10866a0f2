"""A resumable keras-tuner search in a folder, its table of trials, and the best model.

``keras-resnet tune`` runs :func:`search`: keras-tuner's own trials in
``OUTPUT/search/``, our ``search_config.json`` (a :class:`SearchConfig`: the training
config's data, recipe and runtime sections plus the search), ``trials.csv`` and
``best.json``. Rerunning continues the search; other options in the same folder are
refused by the same comparison ``keras-resnet train`` makes (:meth:`Record.changes`).
Trials are numbered as keras-tuner prints them ("Trial 1" is folder ``trial_0``).

    hypermodel = HyperResNet("digits", space={"variant": "v1", "depth": [8, 20],
                                              "lr": (0.1, 0.8)})
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=4,
                                     directory="runs", project_name="search",
                                     distribution_strategy=hypermodel.strategy)
    tuner.search(epochs=3)
"""

import csv
import dataclasses
import datetime
import glob
import io
import math
import os
from typing import Optional

import keras
import keras_tuner

from keras_resnet.errors import EXIT_ENVIRONMENT, CommandError
from keras_resnet.training.callbacks import Signals
from keras_resnet.training.config import (
    DataConfig,
    RecipeConfig,
    RunRecord,
    RuntimeConfig,
    describe_changes,
    identity,
    section,
)
from keras_resnet.training.fit import RunStopped
from keras_resnet.training.run_folder import RUNS, save_model_atomic
from keras_resnet.tuning.hypermodel import HyperResNet, TrialInterrupted, fit_with_training
from keras_resnet.tuning.space import TUNERS, Range
from keras_resnet.utils import atomic_write, check_choice, check_non_negative_int, check_positive_int, fail
from keras_resnet.utils import read_json, write_json_atomic

TUNER_PROJECT = "search"  # keras-tuner's project folder inside the output folder
CONFIG = "search_config.json"


@dataclasses.dataclass
class SearchSection:
    """What is searched and how; ``max_trials`` may grow when a search continues."""

    tuner: str = identity("random")
    objective: str = identity("val_accuracy")
    max_trials: int = 10
    steps_per_epoch: Optional[int] = identity(None)
    space: Optional[dict] = identity(None)  # the narrowed space, as JSON
    family: Optional[str] = None
    weights: Optional[str] = identity(None)  # fine-tuning from these weights (None: from scratch)
    model: Optional[str] = identity(None)  # the named model fine-tuned (with weights)


@dataclasses.dataclass
class SearchConfig(RunRecord):
    """A search folder's options: the training config's data, recipe and runtime sections,
    and the search's own."""

    search: SearchSection = section(SearchSection)


def build_tuner(hypermodel, *, tuner="random", objective="val_accuracy", max_trials=10, epochs=3,
                directory="runs", project_name=TUNER_PROJECT, overwrite=False, seed=0):
    """A keras-tuner tuner ("random", "hyperband" or "bayesian") over ``hypermodel``.

    ``overwrite=False`` reloads an existing search in ``directory/project_name`` and
    continues it. Hyperband runs its brackets up to ``epochs`` (``max_trials`` unused).
    """
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}. Received: tuner={tuner!r}")
    direction = "min" if objective.endswith("loss") else "max"
    common = dict(
        objective=keras_tuner.Objective(objective, direction),
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        seed=seed,
        distribution_strategy=hypermodel.strategy,  # models are built in its scope
    )
    # keras-tuner builds a model at construction only to discover the space; the space
    # has no conditional keys, so sampling it is enough (builder errors then fail trials).
    hypermodel._declaring = True
    try:
        if tuner == "random":
            return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
        if tuner == "bayesian":
            return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
        return keras_tuner.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common)
    finally:
        hypermodel._declaring = False


class SearchFailed(CommandError):
    """No trial of a search completed; the message starts with the first trial's error (exit 1)."""

    def __init__(self, message):
        super().__init__(message, exit_code=EXIT_ENVIRONMENT)


def first_error(message):
    """The exception line(s) at the end of a traceback that keras-tuner stored."""
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    for i in range(len(lines) - 1, 0, -1):
        if not lines[i][0].isspace() and lines[i - 1][0].isspace():
            return "\n".join(lines[i:])
    return lines[-1] if lines else "(no message)"


def trial_number(trial_id):
    """The number keras-tuner prints ("Running Trial #1") for a trial id ("0", "00" ...)."""
    return int(trial_id) + 1 if str(trial_id).isdigit() else trial_id


def trial_table(tuner):
    """Every trial of ``tuner`` as a dict, best first; failed and unfinished ones last."""
    objective = tuner.oracle.objective
    sign = -1 if objective.direction == "max" else 1
    rows = []
    for trial in tuner.oracle.trials.values():
        score = trial.score if trial.status == "COMPLETED" else None
        rows.append(dict(
            trial_id=trial.trial_id,
            trial=trial_number(trial.trial_id),
            status=trial.status,
            score=None if score is None or not math.isfinite(score) else float(score),
            hyperparameters={k: v for k, v in trial.hyperparameters.values.items()
                             if not k.startswith("tuner/")},  # Hyperband's bookkeeping
            error=first_error(trial.message) if trial.status in ("FAILED", "INVALID") else None,
        ))
    rows.sort(key=lambda r: (r["score"] is None, sign * (r["score"] or 0.0), r["trial_id"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


_COLUMNS = (  # (header, key, format)
    ("variant", "variant", "{}"), ("depth", "depth", "{}"), ("width", "width_multiplier", "{:g}"),
    ("se", "se", "{}"), ("sd", "stochastic_depth_rate", "{:g}"), ("lr", "lr", "{:.3g}"),
    ("wd", "weight_decay", "{:.2g}"), ("ls", "label_smoothing", "{:g}"),
    ("warmup", "warmup_fraction", "{:g}"), ("schedule", "schedule", "{}"), ("augment", "augmentation", "{}"),
)


def format_table(rows, objective="val_accuracy"):
    """The ranked trials as a text table."""
    header = ["rank", "trial", "status", objective] + [c[0] for c in _COLUMNS]
    body = []
    for row in rows:
        hp = row["hyperparameters"]
        cells = [str(row["rank"]), str(row["trial"]), row["status"],
                 "-" if row["score"] is None else f"{row['score']:.4f}"]
        cells += [fmt.format(hp[key]) if key in hp else "-" for _, key, fmt in _COLUMNS]
        body.append(cells)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + body)


def _space_json(space):
    return {k: ({"range": [v.low, v.high], "log": v.log} if isinstance(v, Range)
                else {"choice": list(v.values)}) for k, v in space.items()}


def search_config(hypermodel, *, tuner, objective, max_trials, epochs, seed, data_dir=None, output=None,
                  strategy="auto", verbose="auto"):
    """The :class:`SearchConfig` of a search over ``hypermodel``."""
    return SearchConfig(
        search=SearchSection(tuner=tuner, objective=objective, max_trials=max_trials,
                             steps_per_epoch=hypermodel.steps_per_epoch, space=_space_json(hypermodel.space),
                             family=hypermodel.family, weights=hypermodel.weights,
                             model=hypermodel.model_name if hypermodel.weights else None),
        data=DataConfig(dataset=hypermodel.data.name, data_dir=data_dir, image_size=hypermodel.image_size,
                        num_classes=hypermodel.num_classes),
        recipe=RecipeConfig(epochs=epochs, batch_size=hypermodel.batch_size,
                            global_batch_size=hypermodel.global_batch_size),
        runtime=RuntimeConfig(strategy=strategy, precision=hypermodel.precision, seed=seed, output=output,
                              verbose=verbose))


def choose_output(config, output, *, overwrite, new_run, prefix):
    """``(output, continuing)``: ``output`` if given (refused if it holds a search with other
    options, unless ``overwrite``); else the newest ``prefix*`` folder holding a search with
    the same options, unless ``new_run``; else a new ``prefix-<time>`` folder."""
    if output is not None:
        if os.path.exists(output) and not os.path.isdir(output):
            fail("output", output, "a folder")
        path = os.path.join(output, CONFIG)
        if not os.path.exists(path) or overwrite:
            return output, False
        changes = config.changes(read_json(path))
        if changes:
            raise ValueError(f"output holds a search started with other options ({describe_changes(changes)}); "
                             "rerun with the same options, overwrite=True (--overwrite) or another output. "
                             f"Received: output={output!r}")
        return output, True
    if not new_run:
        found = []
        for path in glob.glob(glob.escape(prefix) + "*/" + CONFIG):
            try:
                if not config.changes(read_json(path)):
                    found.append((os.path.getmtime(path), os.path.dirname(path)))
            except (OSError, ValueError):
                continue
        if found:
            output = max(found)[1]
            print(f"Continuing the search in {output} (the newest with these options; --new-run starts afresh).")
            return output, True
    return f"{prefix}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}", False


def search(data="digits", *, data_dir=None, tuner="random", max_trials=10, epochs=3, objective="val_accuracy",
           output=None, space=None, image_size=None, batch_size=None, steps_per_epoch=None, strategy="auto",
           precision="auto", seed=0, weights=None, model="ResNet20", overwrite=False, new_run=False,
           verbose="auto", resume_command=None):
    """Run (or continue) a search and write ``best.json`` and ``trials.csv`` in its folder.

    ``output`` None: the newest ``runs/tune-<dataset>-<tuner>*`` folder holding a search
    with the same options continues (``new_run=True`` starts a new folder). Rerunning with
    the same ``output`` continues the search (keras-tuner reloads its trials): no new trials
    once ``max_trials`` are done. ``overwrite=True`` starts over. SIGINT / SIGTERM stop the
    running trial and raise :class:`keras_resnet.errors.Stopped`; a rerun runs that trial again.
    ``weights`` (anything ``train(weights=...)`` takes) searches the fine-tuning of ``model``
    from them: the architecture is fixed, every trial starts from the same pretrained backbone
    and a fresh head and trains all layers, and ``lr`` (the fine-tuning rate) is searched over
    :data:`keras_resnet.tuning.hypermodel.FINETUNE_LR_RANGE` unless ``space`` narrows it.

    Returns:
        ``{"best": best.json's content, "trials": trial_table rows, "tuner": tuner, ...}``.

    Raises:
        SearchFailed: no trial completed (the message holds the first trial's error).
    """
    check_positive_int("max_trials", max_trials)
    check_positive_int("epochs", epochs)
    check_non_negative_int("seed", seed)
    check_choice("tuner", tuner, TUNERS)
    if not isinstance(objective, str) or not objective.startswith("val_"):
        fail("objective", objective, "a validation metric such as 'val_accuracy'")
    if output is not None and os.path.exists(output) and not os.path.isdir(output):
        fail("output", output, "a folder")
    hypermodel = HyperResNet(data, data_dir=data_dir, space=space, image_size=image_size,
                             batch_size=batch_size, steps_per_epoch=steps_per_epoch, strategy=strategy,
                             precision=precision, seed=seed, weights=weights, model=model)
    config = search_config(hypermodel, tuner=tuner, objective=objective, max_trials=max_trials, epochs=epochs,
                           seed=seed, data_dir=data_dir, strategy=strategy, verbose=verbose)
    name = os.path.basename(os.path.normpath(data_dir)) if data_dir else hypermodel.data.name
    output, _ = choose_output(config, output, overwrite=overwrite, new_run=new_run,
                              prefix=os.path.join(RUNS, f"tune-{name}-{tuner}"))
    config.runtime.output = output
    write_json_atomic(os.path.join(output, CONFIG), {
        **config.to_json(), "strategy_class": type(hypermodel.strategy).__name__,
        "class_names": list(hypermodel.data.class_names)})
    kt = build_tuner(hypermodel, tuner=tuner, objective=objective, max_trials=max_trials, epochs=epochs,
                     directory=output, overwrite=overwrite, seed=seed)
    _run_search(kt, hypermodel, epochs, verbose, output, resume_command)
    rows = trial_table(kt)
    _write_trials_csv(os.path.join(output, "trials.csv"), rows)
    best = _best(kt, rows, hypermodel, objective)
    write_json_atomic(os.path.join(output, "best.json"), best)
    return dict(best=best, trials=rows, tuner=kt, hypermodel=hypermodel, output=output, epochs=epochs)


def _run_search(kt, hypermodel, epochs, verbose, output, resume_command):
    """``kt.search`` with SIGINT / SIGTERM stopping the running trial (kept RUNNING by
    keras-tuner, so that a rerun runs it again) and one line saying how to resume."""
    signals = Signals()
    hypermodel.signals = signals
    try:
        with signals.catch():
            kt.search(epochs=epochs, verbose=verbose)
    except TrialInterrupted as e:
        import signal

        running = [trial_number(t.trial_id) for t in kt.oracle.ongoing_trials.values()]
        done = sum(t.status == "COMPLETED" for t in kt.oracle.trials.values())
        command = resume_command(output) if resume_command else f"search(...) again with output={output!r}"
        raise RunStopped(
            f"Stopped by {signal.Signals(e.signum).name} during trial {', '.join(map(str, running)) or '-'} "
            f"({done} completed, kept in {os.path.join(output, TUNER_PROJECT)}). Resume with: {command}",
            signum=e.signum, output=output, epoch=None, step=None) from None
    except RuntimeError as e:  # keras-tuner stops after max_consecutive_failed_trials failures
        if "consecutive failures" not in str(e):
            raise
    finally:
        hypermodel.signals = None


def _best(kt, rows, hypermodel, objective):
    """best.json's content; SearchFailed when no trial completed."""
    completed = [r for r in rows if r["score"] is not None]
    failed = [r for r in rows if r["status"] in ("FAILED", "INVALID")]
    counts = dict(total=len(rows), completed=len(completed), failed=len(failed))
    if not completed:
        first = min(failed, key=lambda r: int(r["trial_id"]) if r["trial_id"].isdigit() else 0, default=None)
        reason = first["error"] if first else "no trial ran"
        raise SearchFailed(f"No trial completed ({counts['failed']} failed of {counts['total']}). "
                           f"First error (trial {first['trial'] if first else '-'}): {reason}")
    best_row, values = completed[0], completed[0]["hyperparameters"]
    return dict(
        objective=objective, direction=kt.oracle.objective.direction, score=best_row["score"],
        trial_id=best_row["trial_id"], trial=best_row["trial"], hyperparameters=values,
        model=dict(family=hypermodel.family, builder="CifarResNet" if hypermodel.family == "cifar" else "ResNet",
                   variant=values["variant"], depth=values["depth"], image_size=hypermodel.image_size,
                   num_classes=hypermodel.num_classes, preprocessing=hypermodel.preprocessing(values)),
        dataset=hypermodel.data.name, class_names=list(hypermodel.data.class_names), trials=counts)


def _write_trials_csv(path, rows):
    keys = sorted({k for r in rows for k in r["hyperparameters"]})
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["rank", "trial", "trial_id", "status", "score", *keys, "error"])
    for r in rows:
        writer.writerow([r["rank"], r["trial"], r["trial_id"], r["status"], r["score"],
                         *[r["hyperparameters"].get(k) for k in keys], r["error"] or ""])
    atomic_write(path, text.getvalue())


def train_best(result, *, epochs=None, export=True, verbose="auto"):
    """Train the best hyperparameters of a :func:`search` result anew on full epochs,
    evaluate on the test split, save ``best/model.keras`` and export a SavedModel to
    ``saved_models/<search folder name>-best/<version>``, where train and export put theirs.

    Returns ``best/metrics.json``'s content.
    """
    import copy

    hypermodel, values, output = result["hypermodel"], result["best"]["hyperparameters"], result["output"]
    epochs = epochs or result["epochs"]
    final = copy.copy(hypermodel)
    final.steps_per_epoch = hypermodel.data.steps_per_epoch(hypermodel.global_batch_size)
    keras.backend.clear_session()
    with final.strategy.scope():
        model = final.build_model(values)
    history = fit_with_training(final, model, values, epochs=epochs, verbose=verbose)
    common = dict(image_size=final.image_size, preprocessing=final.preprocessing(values))
    test = model.evaluate(final.data.eval_dataset("test", final.global_batch_size,
                                                  augmentation=values["augmentation"], **common),
                          return_dict=True, verbose=0)
    folder = os.path.join(output, "best")
    os.makedirs(folder, exist_ok=True)
    model_path = os.path.join(folder, "model.keras")
    save_model_atomic(model, model_path)
    metrics = dict(epochs=epochs, test_accuracy=float(test["accuracy"]), test_loss=float(test["loss"]),
                   val_accuracy=[float(v) for v in history.history.get("val_accuracy", [])],
                   model_path=model_path, export_path=None, hyperparameters=values)
    if export:
        from keras_resnet.export.saved_model import DEFAULT_EXPORT_ROOT, export_saved_model

        name = os.path.basename(os.path.normpath(output)) + "-best"  # the one export location
        metrics["export_path"] = export_saved_model(
            model, os.path.abspath(os.path.join(DEFAULT_EXPORT_ROOT, name)),
            class_names=list(final.data.class_names), preprocessing=common["preprocessing"])
    write_json_atomic(os.path.join(folder, "metrics.json"), metrics)
    return metrics


