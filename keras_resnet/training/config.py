"""One typed configuration of a training run, in the spirit of Model Garden's ExperimentConfig.

:class:`TrainConfig` has four sections: ``network`` (:class:`ModelConfig`), ``data``
(:class:`DataConfig`), ``recipe`` (:class:`RecipeConfig`) and ``runtime`` (:class:`RuntimeConfig`);
``config.epochs`` reads ``config.recipe.epochs``. It is built once from ``train(...)``
keywords or command-line flags (:meth:`TrainConfig.from_kwargs`) and checked there: a
bad value raises ``ValueError`` naming the keyword (or the ``--flag``) and the value.
Options left as None are filled from the data, the devices and the recipe by
:func:`keras_resnet.training.loop.resolve`, which returns a new config.

``config.json`` holds :meth:`TrainConfig.to_json`: the four sections' fields side by side
(their names are unique, and are the ``train`` keywords), plus the facts of the run.
Whether a run folder may resume is one comparison, :meth:`TrainConfig.changes`, over the
fields marked ``identity``. ``keras-resnet tune`` builds its own record from the same
sections (:class:`keras_resnet.tuning.tuner.SearchConfig`) and compares it the same way.

Nothing here imports TensorFlow or Keras.
"""

import dataclasses
import math
import os
from typing import Any, Optional, Union

from keras_resnet import specs
from keras_resnet.specs import AUGMENTATIONS
from keras_resnet.utils import PRECISIONS, fail, is_int, is_number

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")
JIT_COMPILE = ("auto", "on", "off", True, False)
VERBOSITY = ("auto", 0, 1, 2)
SCHEDULES = ("step", "cosine")
PAPER_WARMUP = "paper"  # warmup_epochs value: lr / 10 until training error < 80%
RECIPE_NAMES = ("auto", "paper")  # train(recipe=...): the family defaults fitted to the run, or the paper as is
# train(finetune=...) with weights (keras_resnet.training.finetune): None / "auto" is the recipe's choice
FINETUNE_MODES = ("auto", "two-phase", "head", "full")
# get_model options that train sets itself: the train keyword to use instead (None: from the data)
OWNED_OPTIONS = {"weights": "weights", "input_shape": "image_size", "zero_init_residual": "zero_init_residual",
                 "synchronized_bn": "sync_bn", "classes": None, "include_top": None, "input_tensor": None,
                 "pooling": None, "classifier_activation": None, "name": None}


def identity(default: Any = None, **kwargs: Any) -> Any:
    """A field whose value defines what a run folder holds: resuming with another value
    is refused (and a default-output rerun only resumes runs equal in all of them)."""
    return dataclasses.field(default=default, metadata={"identity": True}, **kwargs)


@dataclasses.dataclass
class ModelConfig:
    """Which network: a name of ``keras-resnet list`` and options of ``get_model``."""

    model: str = identity("ResNet20")
    # anything get_model accepts: "imagenet", a named set, a file, a keras-hub preset; None: from scratch
    weights: Optional[str] = identity(None)
    model_options: dict = identity(default=None)
    zero_init_residual: bool = identity(False)
    sync_bn: bool = identity(False)
    preprocessing: Optional[str] = identity(None)  # resolved: the model's preprocess_input mode


@dataclasses.dataclass
class DataConfig:
    """Where the images come from and how they enter the network."""

    dataset: str = identity("digits")
    data_dir: Optional[str] = identity(None)
    tfds_data_dir: Optional[str] = None
    manual_dir: Optional[str] = None
    image_size: Optional[int] = identity(None)
    augmentation: Optional[str] = identity(None)
    # held out of train, stratified, when the dataset has no validation split (0: none;
    # best.keras is then not kept: nothing is ever selected on the test split)
    val_fraction: float = identity(0.1)
    num_classes: Optional[int] = identity(None)  # resolved from the data


@dataclasses.dataclass
class RecipeConfig:
    """How to train (He et al. 2015 recipe; None: the dataset family's default)."""

    recipe_name: str = identity("auto")  # "auto" or "paper" (train(recipe=...), --recipe)
    epochs: Optional[int] = identity(None)
    batch_size: Optional[int] = identity(None)  # per replica
    global_batch_size: Optional[int] = identity(None)  # resolved: batch_size x replicas
    lr: Optional[float] = identity(None)  # for a global batch of 256, scaled linearly
    schedule: Optional[str] = identity(None)
    warmup_epochs: Union[float, str, None] = identity(None)
    label_smoothing: Optional[float] = identity(None)
    weight_decay: Optional[float] = identity(None)
    momentum: float = identity(0.9)
    nesterov: bool = identity(False)
    # with weights (keras_resnet.training.finetune): how to fine-tune, resolved by the recipe
    finetune: Optional[str] = identity(None)
    head_epochs: Optional[int] = identity(None)  # two-phase: epochs of phase 1 (the head alone)
    finetune_lr: Optional[float] = identity(None)  # per 256 images, for the layers of the backbone
    freeze_bn: Optional[bool] = identity(None)  # BatchNorm in inference mode while the backbone trains


@dataclasses.dataclass
class RuntimeConfig:
    """Where and how it runs; only ``precision`` and ``seed`` change the result."""

    strategy: str = "auto"
    precision: str = identity("auto")
    jit_compile: Union[str, bool] = "auto"
    deterministic: bool = False
    seed: int = identity(0)
    backup_steps: Optional[int] = None
    output: Optional[str] = None
    export: bool = True
    export_dir: Optional[str] = None
    verbose: Union[str, int] = "auto"


class Record:
    """A configuration made of section dataclasses: JSON, identity and comparison."""

    def sections(self) -> list:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    def to_json(self) -> dict:
        """Every field of every section, side by side (``dataclasses.asdict`` per section)."""
        flat = {}
        for part in self.sections():
            flat.update(dataclasses.asdict(part))
        return flat

    @classmethod
    def from_json(cls, values: dict) -> "Record":
        """The record a ``to_json`` dict (e.g. ``config.json``) describes; unknown keys ignored."""
        parts = {}
        for f in dataclasses.fields(cls):
            names = {g.name for g in dataclasses.fields(f.type)}
            parts[f.name] = f.type(**{k: v for k, v in values.items() if k in names})
        return cls(**parts)

    def identity(self) -> dict:
        """The fields that decide whether a run folder may resume, by name."""
        return {f.name: getattr(part, f.name) for part in self.sections()
                for f in dataclasses.fields(part) if f.metadata.get("identity")}

    def changes(self, previous: dict) -> dict:
        """``{name: (previous, now)}`` for every identity field ``previous`` (a JSON dict)
        holds another value of; empty when this run may continue that one."""
        return {k: (previous.get(k), v) for k, v in self.identity().items()
                if _normal(previous.get(k)) != _normal(v)}


def _normal(value: Any) -> Any:
    """JSON's view of a value: tuples as lists, ints and equal floats alike."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if is_number(value) and float(value).is_integer() and not isinstance(value, bool):
        return float(value)
    return value


def describe_changes(changes: dict) -> str:
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())


def section(kind: type) -> Any:
    """A record's field holding one section (a fresh default per record)."""
    return dataclasses.field(default_factory=kind)


@dataclasses.dataclass
class RunRecord(Record):
    """The sections every run has, a training run or a search: data, recipe, runtime."""

    data: DataConfig = section(DataConfig)
    recipe: RecipeConfig = section(RecipeConfig)
    runtime: RuntimeConfig = section(RuntimeConfig)


@dataclasses.dataclass
class TrainConfig(RunRecord):
    """Everything ``keras-resnet train`` / :func:`keras_resnet.train` is asked to do."""

    network: ModelConfig = section(ModelConfig)

    @classmethod
    def from_kwargs(cls, *, flags: bool = False, **kwargs: Any) -> "TrainConfig":
        """Sort ``train`` keywords into sections and check them (``flags``: name the
        command-line flags in errors, e.g. ``--batch-size``, instead of the keywords)."""
        fields = {}
        for f in dataclasses.fields(cls):
            names = {g.name for g in dataclasses.fields(f.type)}
            fields[f.name] = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        if kwargs:
            raise TypeError(f"train() got unexpected keyword argument(s) {sorted(kwargs)}")
        if fields["network"].get("weights") in ("none", "None"):  # --weights none
            fields["network"]["weights"] = None
        config = cls(**{f.name: f.type(**fields[f.name]) for f in dataclasses.fields(cls)})
        config.check(flags=flags)
        return config

    def check(self, *, flags: bool = False) -> None:
        """ValueError naming the first bad option and its value (no data, devices or models)."""
        _check(self, (lambda k: "--" + k.replace("_", "-")) if flags else (lambda k: k))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with fields changed by name, whichever section holds them."""
        parts = {}
        for f in dataclasses.fields(self):
            part = getattr(self, f.name)
            mine = {k: changes.pop(k) for k in list(changes) if k in {g.name for g in dataclasses.fields(part)}}
            parts[f.name] = dataclasses.replace(part, **mine)
        if changes:
            raise TypeError(f"unknown config field(s) {sorted(changes)}")
        return TrainConfig(**parts)

    def __getattr__(self, name: str) -> Any:
        # config.epochs reads config.recipe.epochs: field names are unique across sections
        if name.startswith("_") or name in ("network", "data", "recipe", "runtime"):
            raise AttributeError(name)
        for part in (self.network, self.data, self.recipe, self.runtime):
            if name in part.__dataclass_fields__:
                return getattr(part, name)
        raise AttributeError(f"TrainConfig has no field {name!r}")


def _check_int(name, value, low):
    if value is not None and not (is_int(value) and value >= low):
        fail(name, value, f"an integer >= {low}")


def _check_number(name, value, low, high, *, open_low=False):
    ok = is_number(value) and math.isfinite(value) and (low < value if open_low else low <= value) and value < high
    if value is not None and not ok:
        fail(name, value, f"a number in {'(' if open_low else '['}{low}, {high})")


def _check_in(name, value, choices):
    if value is not None and value not in choices:
        fail(name, value, f"one of {tuple(c for c in choices if not isinstance(c, bool))}")


def _check_weights(argument, weights, model):
    """A weights value get_model may accept: checked in full when the model is built."""
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.fspath(weights):
        fail(argument, weights, "None, 'imagenet', a named weight set or a file path")
    from keras_resnet.weights import published

    text = os.fspath(weights)
    if text == "imagenet" and specs.MODELS[model].family == "cifar":
        fail(argument, weights, f"a named set or a file for {model} (keras.applications publishes no CIFAR ResNets)")
    if published.is_set_name(text):
        published.find_set(model, text)  # ValueError listing the sets the model has
    elif text != "imagenet" and not os.path.exists(text) and published.set_of_file_name(text) is None:
        fail(argument, weights, "'imagenet', a named set (keras-resnet list --weights) or an existing file")


def _check(config: TrainConfig, name) -> None:
    c = config
    if c.model not in specs.MODELS:
        fail(name("model"), c.model, "a name from `keras-resnet list` (e.g. 'ResNet50')")
    for key, low in (("epochs", 1), ("batch_size", 1), ("image_size", 8), ("backup_steps", 0), ("seed", 0)):
        _check_int(name(key), getattr(c, key), low)
    _check_in(name("strategy"), c.strategy, STRATEGIES)
    _check_in(name("schedule"), c.schedule, SCHEDULES)
    _check_in(name("recipe"), c.recipe_name, RECIPE_NAMES)  # train(recipe=...), --recipe
    _check_in(name("precision"), c.precision, PRECISIONS)
    _check_in(name("jit_compile"), c.jit_compile, JIT_COMPILE)
    _check_in(name("augmentation"), c.augmentation, AUGMENTATIONS)
    _check_in(name("verbose"), c.verbose, VERBOSITY)
    if c.data_dir is not None and not os.path.isdir(c.data_dir):
        fail(name("data_dir"), c.data_dir, "an existing folder")
    if not isinstance(c.dataset, str) or not c.dataset:
        fail(name("dataset"), c.dataset, "a dataset name")
    if c.model_options is not None and not isinstance(c.model_options, dict):
        fail(name("model_options"), c.model_options, "a dict")
    for key in sorted(set(c.model_options or {}) & set(OWNED_OPTIONS)):
        instead = OWNED_OPTIONS[key]
        use = f"use {name(instead)}" if instead else "train sets it from the data"
        option = name("model_options").replace("--model-options", "--model-option")  # the flag is singular
        raise ValueError(f"{option} must be free of {key!r} ({use}). "
                         f"Received: {option} {key}={c.model_options[key]!r}")
    _check_weights(name("weights"), c.weights, c.model)
    _check_in(name("finetune"), c.finetune, FINETUNE_MODES)
    _check_int(name("head_epochs"), c.head_epochs, 0)
    _check_number(name("finetune_lr"), c.finetune_lr, 0, math.inf, open_low=True)
    if c.freeze_bn is not None and not isinstance(c.freeze_bn, bool):
        fail(name("freeze_bn"), c.freeze_bn, "True, False or None")
    if not c.weights:
        for key in ("finetune", "head_epochs", "finetune_lr", "freeze_bn"):
            if getattr(c, key) not in (None, "auto"):
                fail(name(key), getattr(c, key), f"left unset without {name('weights')} (nothing to fine-tune)")
    if c.head_epochs is not None and c.epochs is not None and c.head_epochs > c.epochs:
        fail(name("head_epochs"), c.head_epochs, f"at most epochs={c.epochs}")
    if c.output is not None and os.path.exists(c.output) and not os.path.isdir(c.output):
        fail(name("output"), c.output, "a folder, not a file")
    _check_number(name("lr"), c.lr, 0, math.inf, open_low=True)
    _check_number(name("val_fraction"), c.val_fraction, 0, 1)
    for key in ("label_smoothing", "weight_decay", "momentum"):
        _check_number(name(key), getattr(c, key), 0, 1)
    warmup = c.warmup_epochs
    if warmup is not None and warmup != PAPER_WARMUP and not (is_number(warmup) and warmup >= 0):
        fail(name("warmup_epochs"), warmup, f"a number >= 0 or {PAPER_WARMUP!r}")
    if warmup not in (None, PAPER_WARMUP) and c.epochs is not None and warmup >= c.epochs:
        fail(name("warmup_epochs"), warmup, f"a number in [0, epochs={c.epochs}) or {PAPER_WARMUP!r}")
    for key in ("zero_init_residual", "sync_bn", "nesterov", "deterministic", "export"):
        if not isinstance(getattr(c, key), bool):
            fail(name(key), getattr(c, key), "True or False")
