"""Hyperparameter search with keras-tuner over the spec table and the training recipe.

:class:`HyperResNet` samples a model from :mod:`keras_resnet.specs` (variant, depth,
width, squeeze-and-excitation, stochastic depth) and builds it with
:func:`keras_resnet.ResNet` / :func:`keras_resnet.CifarResNet`; it samples the recipe
(learning rate, weight decay, label smoothing, warm-up, schedule, augmentation) and fits
it with the pieces ``keras-resnet train`` uses (:mod:`keras_resnet.data` pipelines,
:func:`keras_resnet.training.compile_model`, its strategies and callbacks).

The whole search space is :data:`SEARCH_SPACE`. Narrow it per search with
``HyperResNet(data, space={...})`` (or ``--space KEY=VALUE`` on the command line):
a single value fixes a key, a list picks a subset of choices, a ``(low, high)`` pair
narrows a range::

    hypermodel = HyperResNet("digits", space={"variant": "v1", "depth": [8, 20],
                                              "lr": (0.1, 0.8)})
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=4,
                                     directory="runs", project_name="search",
                                     distribution_strategy=hypermodel.strategy)
    tuner.search(epochs=3)

``keras-resnet tune`` runs such a search in a resumable folder, reports failed trials
(keras-tuner only logs them), prints the ranked trials and writes ``best.json``.
"""

import argparse
import csv
import dataclasses
import json
import math
import os
import sys

import keras
import keras_tuner

from keras_resnet import specs
from keras_resnet.models import CifarResNet, ResNet
from keras_resnet.preprocessing import VARIANT_MODES

# Inputs up to this size (CIFAR's 32, the digits' 32) use the CIFAR family of ResNets,
# larger ones the ImageNet family (the same threshold as keras_resnet.data).
SMALL_INPUT_MAX = 64
FAMILIES = ("cifar", "imagenet")
# Squeeze-and-excitation reduction when "se" is on: r = 16 (Hu et al. 2018).
SE_RATIO = 1 / 16
TUNERS = ("random", "hyperband", "bayesian")
TUNER_PROJECT = "search"  # keras-tuner's project folder inside the output folder


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values`` (a single value: fixed)."""

    values: tuple

    def __init__(self, *values):
        object.__setattr__(self, "values", tuple(values))


@dataclasses.dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``, sampled uniformly or log-uniformly."""

    low: float
    high: float
    log: bool = False


# ------------------------------------------------------------------------ search space
# key: default search (a pair: (small inputs, large inputs) where the families differ).
SEARCH_SPACE = {
    # model: keys of keras_resnet.specs
    "variant": (Choice("v1", "v2"), Choice("v1", "v1.5", "v1d", "v2")),
    # CIFAR depths valid for both v1 (6n+2) and v2 (9n+2); ImageNet depths of DEPTHS
    "depth": (Choice(20, 38, 56), Choice(18, 26, 34, 50)),
    "width_multiplier": Choice(0.5, 1.0, 2.0),
    "se": Choice(False, True),
    "stochastic_depth_rate": Choice(0.0, 0.1, 0.2),
    # recipe: arguments of keras_resnet.training.compile_model
    "lr": Range(0.05, 1.0, log=True),  # per 256 images, scaled to the global batch
    "weight_decay": Range(1e-5, 1e-3, log=True),
    "label_smoothing": Choice(0.0, 0.1),
    "warmup_fraction": Choice(0.0, 0.1, 0.2),  # warm-up epochs = fraction x epochs
    "schedule": Choice("step", "cosine"),
    # augmentation strength: presets of keras_resnet.data, weakest first
    "augmentation": (Choice("none", "crop", "cifar"), Choice("none", "imagenet")),
}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# key -> (test of one value, what it must be); "variant" and "depth" depend on the family
_VALUE_RULES = {
    "width_multiplier": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "se": (lambda v: isinstance(v, bool), "True or False"),
    "stochastic_depth_rate": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "lr": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "weight_decay": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "label_smoothing": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "warmup_fraction": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "schedule": (lambda v: v in ("step", "cosine"), "'step' or 'cosine'"),
}


def family_for(image_size):
    """"cifar" for inputs up to :data:`SMALL_INPUT_MAX` pixels, else "imagenet"."""
    return "cifar" if image_size <= SMALL_INPUT_MAX else "imagenet"


def default_space(family):
    """:data:`SEARCH_SPACE` for one family: ``{key: Choice | Range}``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}. Received: family={family!r}")
    index = FAMILIES.index(family)
    return {k: v[index] if isinstance(v, tuple) else v for k, v in SEARCH_SPACE.items()}


def _allowed(key, value, family, variants):
    """(ok, expected) for one value of ``key``."""
    if key == "variant":
        names = tuple(specs.CIFAR_VARIANTS if family == "cifar" else specs.VARIANTS)
        return value in names, f"one of {names} for {family} inputs"
    if key == "depth":
        if family == "imagenet":
            return value in specs.DEPTHS, f"one of {sorted(specs.DEPTHS)} (keras_resnet.specs.DEPTHS)"
        ok = isinstance(value, int) and all(specs.cifar_blocks(value, v) for v in variants)
        rules = {"v1": "6n+2", "v2": "9n+2"}
        return ok, "a CIFAR depth valid for every variant searched (" + ", ".join(
            f"{v}: {rules[v]}" for v in variants) + ")"
    if key == "augmentation":
        from keras_resnet.data import AUGMENTATIONS

        return value in AUGMENTATIONS, f"one of {AUGMENTATIONS}"
    test, expected = _VALUE_RULES[key]
    return test(value), expected


def narrow_space(space, family):
    """The default space of ``family`` narrowed by ``space`` (``{key: value | list |
    (low, high) | Choice | Range}``); ValueError naming a bad key or value."""
    space = {} if space is None else space
    if not isinstance(space, dict):
        raise ValueError(f"space must be a dict of search keys. Received: space={space!r}")
    result = default_space(family)
    unknown = sorted(set(space) - set(result))
    if unknown:
        raise ValueError(
            f"Unknown search key(s) {unknown}; keys are {sorted(result)}. Received: space={space!r}")
    for key, given in space.items():
        default = result[key]
        if isinstance(given, (Choice, Range)):
            narrowed = given
        elif isinstance(default, Range) and isinstance(given, tuple) and len(given) == 2:
            narrowed = Range(float(given[0]), float(given[1]), default.log)
        elif isinstance(given, (list, tuple)):
            narrowed = Choice(*given)
        else:
            narrowed = Choice(given)
        if isinstance(narrowed, Range) and (
            not (_is_number(narrowed.low) and _is_number(narrowed.high)) or narrowed.low > narrowed.high
        ):
            raise ValueError(f"space[{key!r}] must be a range low <= high. Received: {key}={given!r}")
        if isinstance(narrowed, Choice) and not narrowed.values:
            raise ValueError(f"space[{key!r}] must hold at least one value. Received: {key}={given!r}")
        result[key] = narrowed
    variants = result["variant"].values
    for key, entry in result.items():
        values = (entry.low, entry.high) if isinstance(entry, Range) else entry.values
        for value in values:
            ok, expected = _allowed(key, value, family, variants)
            if not ok:
                raise ValueError(f"{key} must be {expected}. Received: {key}={value!r}")
        if isinstance(entry, Range) and entry.log and entry.low <= 0:
            raise ValueError(f"{key} is sampled on a log scale: low must be > 0. Received: {key}={entry!r}")
    return result


def _keys_only(space):
    """``space`` reduced to a check of its keys (values need the input size)."""
    if not isinstance(space, dict):
        return space
    unknown = {k: v for k, v in space.items() if k not in SEARCH_SPACE}
    return unknown


def _sample(hp, key, entry):
    """One keras-tuner hyperparameter for a space entry."""
    if isinstance(entry, Range):
        if entry.low == entry.high:
            return hp.Fixed(key, float(entry.low))
        return hp.Float(key, float(entry.low), float(entry.high), sampling="log" if entry.log else "linear")
    values = list(dict.fromkeys(entry.values))
    if len(values) == 1:
        return hp.Fixed(key, values[0])
    if all(isinstance(v, bool) for v in values):
        return hp.Boolean(key)
    if all(_is_number(v) for v in values) and not all(isinstance(v, int) for v in values):
        values = [float(v) for v in values]
    return hp.Choice(key, values)


# ------------------------------------------------------------------------- hypermodel


class HyperResNet(keras_tuner.HyperModel):
    """A keras-tuner HyperModel over keras_resnet's ResNets and training recipe.

    Args:
        data: a :class:`keras_resnet.data.ImageData` or a dataset name for
            :func:`keras_resnet.data.load_data` (``"digits"``, ``"cifar10"`` ...).
        data_dir: a folder of class subfolders (wins over a dataset name).
        space: narrows :data:`SEARCH_SPACE`: ``{key: value}`` fixes a key,
            ``{key: [values]}`` picks choices, ``{key: (low, high)}`` narrows a range.
        image_size: training size; default the dataset's (small sizes search the CIFAR
            family, larger the ImageNet family).
        batch_size: per replica; default the training recipe's for the dataset.
        steps_per_epoch: at most this many steps an epoch (quick searches).
        strategy: a ``tf.distribute.Strategy`` or a name for
            :func:`keras_resnet.training.build_strategy`; pass ``hypermodel.strategy``
            to the tuner as ``distribution_strategy``.
        precision: "auto", "fp32", "mixed_float16" or "mixed_bfloat16".
        seed: seed of shuffling and augmentation.
    """

    def __init__(self, data="digits", *, data_dir=None, space=None, image_size=None, batch_size=None,
                 steps_per_epoch=None, strategy="auto", precision="auto", seed=0, name="hyper_resnet"):
        super().__init__(name=name, tunable=True)
        for key, value in (("image_size", image_size), ("batch_size", batch_size),
                           ("steps_per_epoch", steps_per_epoch)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{key} must be a positive integer. Received: {key}={value!r}")
        if image_size is not None and image_size < 32:
            raise ValueError(f"image_size must be at least 32. Received: image_size={image_size!r}")
        from keras_resnet.hardware import resolve_precision

        self.precision = resolve_precision(precision)
        # check the space before loading anything (values again once the size is known)
        narrow_space(space if image_size else _keys_only(space), family_for(image_size or 32))
        if isinstance(data, str) or data_dir is not None:
            from keras_resnet.data import load_data

            data = load_data(data, data_dir=data_dir, seed=seed)
        self.data = data
        self.image_size = image_size or data.image_size
        self.family = family_for(self.image_size)
        self.space = narrow_space(space, self.family)
        self.seed = seed
        self._declaring = False
        self.max_steps = steps_per_epoch
        self.recipe = _recipe(data, self.image_size)
        self.batch_size = batch_size or self.recipe["batch_size"]
        self.strategy = _training().build_strategy(strategy) if isinstance(strategy, str) else strategy
        self.global_batch_size = self.batch_size * self.strategy.num_replicas_in_sync
        # ValueError now (not in every trial) when the batch exceeds the training set
        self.steps_per_epoch = min(data.steps_per_epoch(self.global_batch_size), steps_per_epoch or math.inf)

    @property
    def num_classes(self):
        return len(self.data.class_names)

    def values(self, hp):
        """Sample every key of the space: ``{key: value}``."""
        return {key: _sample(hp, key, entry) for key, entry in self.space.items()}

    def preprocessing(self, values):
        return VARIANT_MODES["cifar" if self.family == "cifar" else values["variant"]]

    def declare_hyperparameters(self, hp):
        self.values(hp)

    def build(self, hp):
        values = self.values(hp)
        if self._declaring:  # keras-tuner's space discovery: no model needed
            return None
        return self.build_model(values)

    def build_model(self, values):
        """The model of one set of sampled values (e.g. ``best.json``'s hyperparameters)."""
        options = dict(self.recipe.get("model_options", {}))
        options.update(
            width_multiplier=float(values["width_multiplier"]),
            se_ratio=SE_RATIO if values["se"] else None,
            stochastic_depth_rate=float(values["stochastic_depth_rate"]),
        )
        builder = CifarResNet if self.family == "cifar" else ResNet
        from keras_resnet.hardware import keras_policy_name

        policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(keras_policy_name(self.precision))
        try:
            return builder(values["depth"], variant=values["variant"], weights=None,
                           input_shape=(self.image_size, self.image_size, 3),
                           classes=self.num_classes, **options)
        finally:
            keras.config.set_dtype_policy(policy)

    def fit(self, hp, model, *args, epochs=1, initial_epoch=0, callbacks=None, verbose="auto", **kwargs):
        if args or kwargs:
            raise ValueError(
                "HyperResNet.fit trains on its own data; pass only epochs, callbacks and "
                f"verbose to tuner.search(). Received: {list(kwargs) or list(args)}"
            )
        return fit_with_training(self, model, self.values(hp), epochs=epochs, initial_epoch=initial_epoch,
                                 callbacks=callbacks or [], verbose=verbose)


# ----------------------------------------------------------- glue to keras_resnet.training


def _training():
    from keras_resnet import training

    return training


def _recipe(data, image_size):
    """The training recipe ``keras-resnet train`` would use for this data."""
    training = _training()
    if data.name == "digits":
        family = "digits"
    else:
        family = "cifar" if image_size <= SMALL_INPUT_MAX else "imagenet"
    return dict(training.RECIPES[family])


def fit_with_training(hypermodel, model, values, *, epochs, initial_epoch=0, callbacks=(), verbose="auto"):
    """Compile ``model`` with the training recipe and sampled values, and fit it on the
    training pipelines of :mod:`keras_resnet.data` with the training module's callbacks.

    Returns the ``keras.callbacks.History``. A diverged run fails the trial with its reason.
    """
    training = _training()
    steps, global_batch = hypermodel.steps_per_epoch, hypermodel.global_batch_size
    learning_rate = training.compile_model(
        model,
        steps_per_epoch=steps,
        epochs=epochs,
        global_batch_size=global_batch,
        num_classes=hypermodel.num_classes,
        lr=float(values["lr"]),
        schedule=values["schedule"],
        warmup_epochs=float(values["warmup_fraction"]) * epochs,
        label_smoothing=float(values["label_smoothing"]),
        weight_decay=float(values["weight_decay"]),
        strategy=hypermodel.strategy,
    )
    with hypermodel.strategy.scope():
        model.optimizer.build(model.trainable_variables)
        # Hyperband continues trials from an epoch: the schedule continues with them
        model.optimizer.iterations.assign(initial_epoch * steps)
    nan_guard = training.NaNGuard()
    common = dict(image_size=hypermodel.image_size, preprocessing=hypermodel.preprocessing(values))
    train_data = hypermodel.data.train_dataset(
        global_batch, augmentation=values["augmentation"], seed=hypermodel.seed,
        start_epoch=initial_epoch, epochs=epochs, **common)
    val_data = hypermodel.data.eval_dataset(
        "val" if hypermodel.data.num_val else "test", global_batch, augmentation=values["augmentation"], **common)
    history = model.fit(train_data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                        validation_data=val_data, callbacks=[nan_guard, *callbacks], verbose=verbose)
    if nan_guard.fired:
        epoch, step, loss = nan_guard.fired
        raise keras_tuner.errors.FailedTrialError(
            f"the loss became {loss} at epoch {epoch + 1}, step {step} (lr={values['lr']:.3g})")
    return history


# ----------------------------------------------------------------------------- search


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


class SearchFailed(RuntimeError):
    """No trial of a search completed; the message starts with the first trial's error."""


def first_error(message):
    """The exception line(s) at the end of a traceback that keras-tuner stored."""
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    for i in range(len(lines) - 1, 0, -1):
        if not lines[i][0].isspace() and lines[i - 1][0].isspace():
            return "\n".join(lines[i:])
    return lines[-1] if lines else "(no message)"


def trial_table(tuner):
    """Every trial of ``tuner`` as a dict, best first; failed and unfinished ones last."""
    objective = tuner.oracle.objective
    sign = -1 if objective.direction == "max" else 1
    rows = []
    for trial in tuner.oracle.trials.values():
        score = trial.score if trial.status == "COMPLETED" else None
        rows.append(dict(
            trial_id=trial.trial_id,
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
        cells = [str(row["rank"]), row["trial_id"], row["status"],
                 "-" if row["score"] is None else f"{row['score']:.4f}"]
        cells += [fmt.format(hp[key]) if key in hp else "-" for _, key, fmt in _COLUMNS]
        body.append(cells)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + body)


def _space_json(space):
    return {k: ({"range": [v.low, v.high], "log": v.log} if isinstance(v, Range)
                else {"choice": list(v.values)}) for k, v in space.items()}


def _write_json(path, obj):
    from keras_resnet.training import write_json_atomic  # temp file, fsync, rename

    write_json_atomic(path, obj)


# Options that define a search folder: resuming with other values is an error.
_IDENTITY_KEYS = ("tuner", "objective", "dataset", "data_dir", "image_size", "batch_size", "steps_per_epoch",
                  "epochs", "seed", "space")


def search(data="digits", *, data_dir=None, tuner="random", max_trials=10, epochs=3, objective="val_accuracy",
           output=None, space=None, image_size=None, batch_size=None, steps_per_epoch=None, strategy="auto",
           precision="auto", seed=0, overwrite=False, verbose="auto"):
    """Run (or continue) a search in ``output`` and write ``best.json`` and ``trials.csv``.

    Rerunning with the same ``output`` continues the search (keras-tuner reloads its
    trials): no new trials once ``max_trials`` are done. ``overwrite=True`` starts over.

    Returns:
        ``{"best": best.json's content, "trials": trial_table rows, "tuner": tuner}``.

    Raises:
        SearchFailed: no trial completed (the message holds the first trial's error).
    """
    for key, value, low in (("max_trials", max_trials, 1), ("epochs", epochs, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}. Received: {key}={value!r}")
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}. Received: tuner={tuner!r}")
    if not isinstance(objective, str) or not objective.startswith("val_"):
        raise ValueError("objective must be a validation metric such as 'val_accuracy'. "
                         f"Received: objective={objective!r}")
    name = os.path.basename(os.path.normpath(data_dir)) if data_dir else getattr(data, "name", data)
    output = output or os.path.join("runs", f"tune-{name}-{tuner}")
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"output must be a folder. Received: output={output!r}")
    hypermodel = HyperResNet(data, data_dir=data_dir, space=space, image_size=image_size,
                             batch_size=batch_size, steps_per_epoch=steps_per_epoch, strategy=strategy,
                             precision=precision, seed=seed)
    config = dict(tuner=tuner, objective=objective, dataset=hypermodel.data.name, data_dir=data_dir,
                  image_size=hypermodel.image_size, batch_size=hypermodel.batch_size,
                  steps_per_epoch=hypermodel.steps_per_epoch, epochs=epochs, seed=seed,
                  space=_space_json(hypermodel.space), family=hypermodel.family, max_trials=max_trials,
                  global_batch_size=hypermodel.global_batch_size, precision=hypermodel.precision,
                  strategy_class=type(hypermodel.strategy).__name__,
                  class_names=list(hypermodel.data.class_names))
    config_path = os.path.join(output, "search_config.json")
    if os.path.exists(config_path) and not overwrite:
        with open(config_path) as f:
            previous = json.load(f)
        changed = {k: (previous.get(k), config[k]) for k in _IDENTITY_KEYS if previous.get(k) != config[k]}
        if changed:
            detail = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(f"output holds a search started with other options ({detail}); rerun with "
                             "the same options, overwrite=True (--overwrite) or another output. "
                             f"Received: output={output!r}")
    os.makedirs(output, exist_ok=True)
    _write_json(config_path, config)

    kt = build_tuner(hypermodel, tuner=tuner, objective=objective, max_trials=max_trials, epochs=epochs,
                     directory=output, overwrite=overwrite, seed=seed)
    try:
        kt.search(epochs=epochs, verbose=verbose)
    except RuntimeError as e:  # keras-tuner stops after max_consecutive_failed_trials failures
        if "consecutive failures" not in str(e):
            raise
    rows = trial_table(kt)
    _write_trials_csv(os.path.join(output, "trials.csv"), rows)
    completed = [r for r in rows if r["score"] is not None]
    failed = [r for r in rows if r["status"] in ("FAILED", "INVALID")]
    counts = dict(total=len(rows), completed=len(completed), failed=len(failed))
    if not completed:
        first = min(failed, key=lambda r: int(r["trial_id"]) if r["trial_id"].isdigit() else 0, default=None)
        reason = first["error"] if first else "no trial ran"
        raise SearchFailed(f"No trial completed ({counts['failed']} failed of {counts['total']}). "
                           f"First error (trial {first['trial_id'] if first else '-'}): {reason}")
    best_row = completed[0]
    best = dict(
        objective=objective,
        direction=kt.oracle.objective.direction,
        score=best_row["score"],
        trial_id=best_row["trial_id"],
        hyperparameters=best_row["hyperparameters"],
        model=dict(family=hypermodel.family,
                   builder="CifarResNet" if hypermodel.family == "cifar" else "ResNet",
                   variant=best_row["hyperparameters"]["variant"], depth=best_row["hyperparameters"]["depth"],
                   image_size=hypermodel.image_size, num_classes=hypermodel.num_classes,
                   preprocessing=hypermodel.preprocessing(best_row["hyperparameters"])),
        dataset=hypermodel.data.name,
        class_names=list(hypermodel.data.class_names),
        trials=counts,
    )
    _write_json(os.path.join(output, "best.json"), best)
    return dict(best=best, trials=rows, tuner=kt, hypermodel=hypermodel, output=output, epochs=epochs)


def _write_trials_csv(path, rows):
    keys = sorted({k for r in rows for k in r["hyperparameters"]})
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "trial_id", "status", "score", *keys, "error"])
        for r in rows:
            writer.writerow([r["rank"], r["trial_id"], r["status"], r["score"],
                             *[r["hyperparameters"].get(k) for k in keys], r["error"] or ""])
    os.replace(tmp, path)


def train_best(result, *, epochs=None, export=True, verbose="auto"):
    """Train the best hyperparameters of a :func:`search` result anew on full epochs,
    evaluate on the test split, save ``best/model.keras`` and export a SavedModel to
    ``best/saved_model/<version>`` (when :mod:`keras_resnet.export` is installed).

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
    model.save(model_path)
    metrics = dict(epochs=epochs, test_accuracy=float(test["accuracy"]), test_loss=float(test["loss"]),
                   val_accuracy=[float(v) for v in history.history.get("val_accuracy", [])],
                   model_path=model_path, export_path=None, hyperparameters=values)
    if export:
        try:
            from keras_resnet.export import export_saved_model
        except ModuleNotFoundError as e:
            if e.name != "keras_resnet.export":
                raise
            print("keras_resnet.export is not available: skipping the SavedModel export.")
        else:
            metrics["export_path"] = export_saved_model(
                model, os.path.join(folder, "saved_model"), class_names=list(final.data.class_names),
                preprocessing=common["preprocessing"])
    _write_json(os.path.join(folder, "metrics.json"), metrics)
    return metrics


# -------------------------------------------------------------------------------- CLI


def parse_space(items):
    """``["variant=v1", "depth=20,32", "lr=0.05:0.4", "se=false"]`` -> a space dict."""
    def scalar(text):
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text.strip()

    space = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(
                f"--space must be KEY=VALUE, KEY=V1,V2 or KEY=LOW:HIGH. Received: --space {item!r}")
        key = key.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 2:
                raise ValueError(f"--space ranges are LOW:HIGH. Received: --space {item!r}")
            space[key] = tuple(scalar(p) for p in parts)
        elif "," in text:
            space[key] = [scalar(p) for p in text.split(",")]
        else:
            space[key] = scalar(text)
    return space


def _parser(prog):
    p = argparse.ArgumentParser(
        prog=prog, description="Hyperparameter search over keras_resnet models and the training recipe "
        "(keras-tuner). Rerun with the same --output to continue.")
    p.add_argument("--tuner", choices=TUNERS, default="random")
    p.add_argument("--max-trials", type=int, default=10, help="trials of random / bayesian search")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial (hyperband: the most per trial)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dataset", default="digits", help="'digits' (bundled) or a tfds name")
    source.add_argument("--data-dir", default=None, help="folder of class subfolders")
    p.add_argument("--objective", default="val_accuracy", help="val_accuracy, val_loss, val_top5 ...")
    p.add_argument("--output", default=None, help="search folder (default runs/tune-DATASET-TUNER)")
    p.add_argument("--strategy", default="auto", help="auto, one-device, mirrored, multi-worker, tpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="per replica (default: the recipe's)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap steps per epoch (quick searches)")
    p.add_argument("--space", action="append", default=[], metavar="KEY=VALUE",
                   help="narrow the search: variant=v1, depth=20,32, lr=0.05:0.4, se=false (repeatable); "
                        f"keys: {', '.join(SEARCH_SPACE)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="start the search over")
    p.add_argument("--export", action="store_true",
                   help="train the best hyperparameters anew, save best/model.keras, export a SavedModel")
    p.add_argument("--final-epochs", type=int, default=None,
                   help="epochs of the --export training (default --epochs)")
    p.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2))
    return p


def cli_main(command, argv):
    """``keras-resnet tune``: exit 0 when at least one trial completed, 1 when none did,
    2 on bad arguments."""
    args = _parser(f"keras-resnet {command}").parse_args(argv)
    prog = f"keras-resnet {command}"
    try:
        space = parse_space(args.space)
        if args.final_epochs is not None and args.final_epochs < 1:
            raise ValueError(f"final_epochs must be >= 1. Received: final_epochs={args.final_epochs}")
        result = search(args.dataset, data_dir=args.data_dir, tuner=args.tuner, max_trials=args.max_trials,
                        epochs=args.epochs, objective=args.objective, output=args.output, space=space,
                        image_size=args.image_size, batch_size=args.batch_size,
                        steps_per_epoch=args.steps_per_epoch, strategy=args.strategy,
                        precision=args.precision,
                        seed=args.seed, overwrite=args.overwrite,
                        verbose="auto" if args.verbose is None else args.verbose)
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except SearchFailed as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    rows, best = result["trials"], result["best"]
    print()
    print(format_table(rows, args.objective))
    failed = [r for r in rows if r["status"] in ("FAILED", "INVALID")]
    if failed:
        print(f"\n{len(failed)} trial(s) failed; first error "
              f"(trial {failed[0]['trial_id']}): {failed[0]['error']}")
    print(f"\nBest: trial {best['trial_id']}, {args.objective} {best['score']:.4f}: "
          + ", ".join(f"{k}={v}" for k, v in best["hyperparameters"].items()))
    print(f"Wrote {os.path.join(result['output'], 'best.json')}")
    if args.export:
        metrics = train_best(result, epochs=args.final_epochs or args.epochs,
                             verbose="auto" if args.verbose is None else args.verbose)
        print(f"Best hyperparameters trained {metrics['epochs']} epochs: test accuracy "
              f"{metrics['test_accuracy']:.4f}; model {metrics['model_path']}"
              + (f"; SavedModel {metrics['export_path']}" if metrics["export_path"] else ""))
    return 0
