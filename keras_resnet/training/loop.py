"""``train()``: from keywords (or flags) to a finished run folder.

:func:`run` takes a :class:`~keras_resnet.training.config.TrainConfig`, resolves what was
left open (:func:`resolve`: data, devices, recipe), picks the run folder (a default-output
rerun continues the newest unfinished run with the same options), prints a header, builds
and compiles the model under its precision, and fits it in at most two ``model.fit`` calls:
the rest of an interrupted epoch, then whole epochs.

Exact resume: ``backup/state.npz`` holds every model variable (BatchNorm statistics and
the dropout / stochastic-depth ``SeedGenerator`` states included), every optimizer
variable (momentum, iteration count, loss scale), the epoch and the step inside the
epoch. It is written atomically every ``backup_steps`` steps, at every epoch end and when
SIGINT / SIGTERM arrives. Shuffle order and augmentation come from ``(seed, epoch, step)``
in :meth:`keras_resnet.data.ImageData.train_dataset`, so a resumed run sees exactly the
batches an uninterrupted run sees; with ``deterministic=True`` it ends with equal weights.
This replaces ``keras.callbacks.BackupAndRestore``, which restores only the epoch.
"""

import dataclasses
import datetime
import math
import os
import shutil

import keras
import tensorflow as tf

from keras_resnet.training import callbacks as cb
from keras_resnet.training import finetune as ft
from keras_resnet.training import run_folder as rf
from keras_resnet.training.config import TrainConfig, describe_changes
from keras_resnet.training.fit import FitJob, python_resume_command
from keras_resnet.training.recipe import (
    PAPER_ITERATIONS, RECIPE_FIELDS, bn_momentum_for, compile_model, default_recipe, recipe_family)
from keras_resnet.training.strategy import build_strategy, is_chief
from keras_resnet.utils import dtype_policy, write_json_atomic


# ------------------------------------------------------------------------- resolve


def resolve(config, data, strategy):
    """``config`` with every open option filled from the data, devices and the recipe, and
    the facts of the run (class names, counts, replicas, steps); ValueError if they clash."""
    from keras_resnet.hardware import resolve_jit_compile, resolve_precision
    from keras_resnet.specs import model_info

    info = model_info(config.model)
    inputs = ft.weights_input(config.model, config.weights) if config.weights else None
    image_size = config.image_size or (inputs["image_size"] if inputs else data.image_size)
    size_why = "as asked" if config.image_size else ("the weights' eval size" if inputs else "the dataset's")
    family = recipe_family(data.name if config.data_dir is None else "", image_size)
    recipe = default_recipe(family, model_info=info, epochs=config.epochs or (ft.FINETUNE_EPOCHS if inputs else None),
                            recipe=config.recipe_name, warmup_given=config.warmup_epochs is not None)
    if inputs and config.warmup_epochs is None:
        recipe["warmup_epochs"] = 0.0  # the head starts at its rate; the backbone's rate is already low
        recipe["reason"] = recipe["reason"].replace("cosine with warm-up", "cosine")
    filled = {k: recipe[k] if getattr(config, k) is None else getattr(config, k) for k in RECIPE_FIELDS}
    if inputs and config.epochs is None:
        filled["epochs"] = ft.FINETUNE_EPOCHS
    replicas = strategy.num_replicas_in_sync
    filled["batch_size"], batch_why = _batch_size(filled["batch_size"], replicas, data, config)
    global_batch = filled["batch_size"] * replicas
    steps = data.steps_per_epoch(global_batch)
    if config.recipe_name == "paper" and family != "imagenet" and config.epochs is None:
        filled["epochs"] = math.ceil(PAPER_ITERATIONS / steps)  # He et al.: 64k iterations
    options = {**(inputs["options"] if inputs else {}), **(config.model_options or {})}  # the set's architecture
    if recipe.get("bn_momentum") == "auto" and "bn_momentum" not in options:
        options["bn_momentum"] = bn_momentum_for(steps)
    augmentation, why = _augmentation(config, data)
    eval_transform, eval_why = ft.run_eval_transform(
        augmentation, inputs["eval_transform"] if inputs else None, image_size,
        (inputs or {}).get("set", config.weights))
    reason = recipe["reason"]
    finetune = {}
    if inputs:
        finetune = ft.default_finetune(config.replace(epochs=filled["epochs"]))
        reason = f"{config.recipe_name}: {finetune.pop('reason')}; " + reason.split(": ", 1)[1]
        finetune.pop("epochs")
        finetune["finetune_lr"] = config.finetune_lr or filled["lr"] * ft.FINETUNE_LR_FACTOR
    resolved = config.replace(
        **filled, **finetune, image_size=image_size, global_batch_size=global_batch, model_options=options,
        preprocessing=inputs["preprocessing"] if inputs else info["preprocessing"],
        num_classes=len(data.class_names), augmentation=augmentation,
        precision=resolve_precision(config.precision),
        jit_compile=resolve_jit_compile(config.jit_compile),
        backup_steps=max(1, steps // 4) if config.backup_steps is None else config.backup_steps,
        export_dir=config.export_dir)
    resolved.check()  # the combination (warm-up shorter than the run, ...)
    facts = dict(
        model_info=info, class_names=list(data.class_names), num_train=data.num_train,
        num_val=data.num_val, num_test=data.num_test, recipe_family=family, recipe_reason=reason,
        augmentation_reason=why, splits=data.split_info, steps_per_epoch=steps, batch_reason=batch_why,
        image_size_reason=size_why, peak_lr=filled["lr"] * global_batch / 256.0,
        weight_decay_applies_to="conv and dense kernels (L2 in the loss); not BatchNorm, not biases; "
                                "trainable ones only",
        phases=[dataclasses.asdict(p) for p in ft.plan_phases(resolved)],
        eval_transform=eval_transform, eval_transform_reason=eval_why,  # val, test, evaluate, the export
        pretrained=dict(weights=config.weights, eval_transform=inputs["eval_transform"],
                        trained_on=inputs["trained_on"], published_classes=inputs["published_classes"])
        if inputs else None,
        strategy_class=type(strategy).__name__, replicas=replicas, versions=rf.versions(),
        started=datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return resolved, facts


def _batch_size(batch_size, replicas, data, config):
    """``(per-replica batch, why)``: the recipe's, lowered for a small training set (auto
    recipe, batch not given) to about ``MIN_STEPS`` steps an epoch (never below ``MIN_BATCH``),
    and clamped to the training set in any case."""
    if data.num_train < replicas:
        raise ValueError(f"the {data.num_train} training images of {data.name} are fewer than the "
                         f"{replicas} replicas. Received: strategy={config.strategy!r}")
    why = "as asked" if config.batch_size is not None else "the recipe's"
    if config.batch_size is None and config.recipe_name == "auto":
        fitted = max(ft.MIN_BATCH, data.num_train // (ft.MIN_STEPS * replicas))
        if fitted < batch_size:
            batch_size = fitted
            why = (f"lowered from the recipe's for {data.num_train} training images: about "
                   f"{ft.MIN_STEPS} steps an epoch, at least {ft.MIN_BATCH} a batch")
    if batch_size * replicas <= data.num_train:
        return batch_size, why
    clamped = data.num_train // replicas
    print(f"Note: batch size {batch_size} x {replicas} replica(s) is more than the "
          f"{data.num_train} training images of {data.name}: using batch size {clamped}.")
    return clamped, f"clamped to the {data.num_train} training images"


def _augmentation(config, data):
    """``(augmentation, why)``: as asked; else the data's default, without flips where the
    auto recipe finds that they change the classes (:meth:`ImageData.flip_check`)."""
    if config.augmentation is not None:
        return config.augmentation, "as asked"
    if config.recipe_name == "auto":
        augmentation, why = data.auto_augmentation(config.seed)
        if why is not None:
            return augmentation, why
    # the data's own default (by image size, or the source's), not the recipe family's
    return data.default_augmentation, f"the default for {data.name}"


def choose_folder(config, *, overwrite, new_run, started):
    """``(output, state, found)``: the folder named by ``output``; else the newest unfinished
    run in runs/ with the same options (``found``), unless ``new_run``; else a new one."""
    if config.output is not None:
        return config.output, rf.folder_state(config.output, overwrite), False
    source = os.path.basename(os.path.normpath(config.data_dir)) if config.data_dir else config.dataset
    prefix = f"{config.model}-{source}-"
    if not new_run:
        found = rf.newest_unfinished(rf.RUNS, prefix, config)
        if found:
            return found, rf.folder_state(found, False), True
    return os.path.join(rf.RUNS, prefix + started), "new", False


# -------------------------------------------------------------------------- header


_STRATEGY_NAMES = {"_DefaultDistributionStrategy": "one device (TensorFlow's default strategy)",
                   "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy"}


def header(config, facts, data, strategy, requested_precision):
    """The lines printed before the first epoch: what will run, on what, and where."""
    from keras_resnet.hardware import precision_reason
    from keras_resnet.preprocessing import describe_preprocessing

    info = facts["model_info"]
    options = ", ".join(f"{k}={v}" for k, v in sorted(config.model_options.items()))
    warmup = config.warmup_epochs
    if warmup != "paper":
        warmup = f"{warmup:g} epoch" + ("" if warmup == 1 else "s")
    source = config.data_dir or data.name
    size_why = facts.get("image_size_reason", "")
    return [
        f"Model      {config.model} ({info['family']} {info['variant']}, depth {info['depth']}"
        + (f"; {options}" if options else "") + f"): {facts['parameters']:,} parameters",
        f"Weights    {weights_line(config, facts)}",
        f"Data       {source}: {len(data.class_names)} classes, {data.describe_splits()}; "
        f"{config.image_size} px" + (f" ({size_why})" if size_why else "")
        + f", {describe_preprocessing(config.preprocessing)} preprocessing, augmentation {config.augmentation} "
        f"({facts['augmentation_reason']})" + _eval_line(facts),
        f"Precision  {config.precision} ({precision_reason(requested_precision, config.precision)})",
        f"Strategy   {_STRATEGY_NAMES.get(facts['strategy_class'], facts['strategy_class'])}, "
        f"{facts['replicas']} replica(s): global batch "
        f"{config.global_batch_size}, {facts['steps_per_epoch']} steps/epoch"
        + (f" (batch {facts['batch_reason']})" if facts.get("batch_reason", "").startswith(("lowered", "clamped"))
           else ""),
        f"Recipe     {facts['recipe_reason']}",
        *([f"           phase {i + 1}, {ft.Phase(**p).describe(config.global_batch_size)}"
           for i, p in enumerate(facts["phases"])] if config.weights else []),
        f"           {config.epochs} epochs, SGD momentum {config.momentum:g}"
        f"{' nesterov' if config.nesterov else ''}, lr {facts['peak_lr']:.4g} ({config.lr:g} per 256), "
        f"{config.schedule}, warm-up {warmup}, weight decay {config.weight_decay:g}, "
        f"label smoothing {config.label_smoothing:g}",
        f"Run folder {config.output}",
    ]


def _eval_line(facts):
    """The Data line's end: the val / test / export transform and where it came from."""
    transform = facts.get("eval_transform")
    if not transform:
        return ""
    from keras_resnet.export.transform import EvalTransform

    why = facts.get("eval_transform_reason")
    return f"; eval {EvalTransform(**transform).describe()}" + (f" ({why})" if why else "")


def weights_line(config, facts):
    """What the model starts from: the weights, tensors loaded and what is fresh."""
    if not config.weights:
        return ("none: random initialisation, from scratch (--weights imagenet, a named set of "
                "`keras-resnet list --weights` or a file fine-tunes pretrained weights)")
    loaded = facts.get("pretrained") or {}
    if facts.get("resumed_from_backup"):
        return (f"{config.weights}: the backup's trained weights (the pretrained file is not read again; "
                f"{loaded.get('tensors_loaded', '?')} tensors were loaded at the start)")
    fresh = loaded["fresh"]
    return (f"{config.weights}: {loaded['tensors_loaded']} tensors loaded; "
            + (f"{len(fresh)} initialised afresh ({', '.join(fresh)}) for "
               f"{config.num_classes} classes" if fresh else "the published head kept (same data and classes)"))


# --------------------------------------------------------------------------- train


def train(
    model: str = "ResNet20", *, weights: str | None = None, dataset: str = "digits", data_dir: str | None = None,
    tfds_data_dir: str | None = None, manual_dir: str | None = None, epochs: int | None = None,
    batch_size: int | None = None, image_size: int | None = None, output: str | None = None,
    strategy: str = "auto", precision: str = "auto", jit_compile: str | bool = "auto",
    deterministic: bool = False, seed: int = 0, lr: float | None = None, schedule: str | None = None,
    warmup_epochs: float | str | None = None, label_smoothing: float | None = None,
    weight_decay: float | None = None, momentum: float = 0.9, nesterov: bool = False,
    augmentation: str | None = None, recipe: str = "auto", val_fraction: float = 0.1,
    zero_init_residual: bool = False, sync_bn: bool = False, model_options: dict | None = None,
    finetune: str | None = None, head_epochs: int | None = None, finetune_lr: float | None = None,
    freeze_bn: bool | None = None, backup_steps: int | None = None, overwrite: bool = False, new_run: bool = False, export: bool = True,
    export_dir: str | None = None, verbose: str | int = "auto",
) -> tuple:
    """Train ``model`` (any name of ``keras-resnet list``) and write a run folder.

    Options left as None take the recipe of the dataset family (``RECIPES``: "digits",
    "cifar" for images up to 64 px, "imagenet" above). ``recipe="auto"`` (the default)
    fits it to the run: a short run (under 50 epochs) decays with cosine after a warm-up,
    BatchNorm momentum follows the steps per epoch (``bn_momentum_for``), and the CIFAR
    augmentation drops its flips where mirror images change the classes
    (:meth:`keras_resnet.data.ImageData.flip_check`). ``recipe="paper"`` keeps He et al.
    2015 as written (CIFAR family: batch 128, lr 0.1, /10 at 32k and 48k of 64k
    iterations). ``batch_size`` is per replica; the global batch is ``batch_size *
    replicas`` (clamped, with a note, to the training set) and ``lr`` (for a batch of
    256) is scaled to it. ``warmup_epochs`` is a number of linear warm-up epochs or
    ``"paper"`` (the ResNet-110 trick, the default for CIFAR models of depth >= 110).
    ``weights``: where the model starts. None (the default) trains from random
    initialisation, as timm and keras-hub do: nothing is downloaded behind the user's back
    and a run is reproducible offline. Any value :func:`keras_resnet.get_model` accepts
    fine-tunes it: ``"imagenet"``, a named set (``keras-resnet list --weights``), a
    weights file or a keras-hub preset. The backbone loads, the head is rebuilt for the
    dataset's classes, and the image size (the set's eval crop, unless ``image_size`` is
    given), preprocessing and evaluation transform follow the weights. ``finetune`` says how
    to fine-tune (:mod:`keras_resnet.training.finetune`): "full" (the auto default, measured
    best: all layers from the start at ``finetune_lr``, the recipe's ``lr`` unless given),
    "two-phase" (``head_epochs`` epochs of the head alone on a frozen backbone with frozen
    BatchNorm at ``lr``, then all layers at ``finetune_lr``; chosen when ``head_epochs`` is
    given) or "head" (the head alone); ``freeze_bn`` keeps BatchNorm in inference mode
    while the backbone trains (default: False, BatchNorm adapts). A run with
    weights defaults to 8 epochs without warm-up.
    ``model_options`` go to :func:`keras_resnet.get_model` (``width_multiplier``,
    ``stochastic_depth_rate``, ``bn_momentum``, ...); those train sets itself
    (``weights``, ``classes``, ``input_shape``, ``include_top`` ...) are refused, naming
    the keyword to use instead. On a small training set the auto recipe lowers the batch to
    about 10 steps an epoch (at least 8 images a batch) and says so. ``val_fraction``: where the dataset
    has no validation split, this fraction of each class of train is held out (chosen
    with ``seed``) to validate on and select ``best.keras``; 0 validates on nothing. The
    test split is evaluated once, at the end. ``backup_steps``: steps between mid-epoch
    backups (0: epoch ends only; default about 4 per epoch).

    ``output`` None: a new folder ``runs/<model>-<dataset>-<time>``, unless runs/ holds an
    unfinished run of the same options, which continues (``new_run=True`` starts afresh).
    Rerunning with the same ``output`` resumes a stopped run from its last backup, and
    returns a finished run without training unless ``overwrite=True``. The SavedModel goes
    to ``saved_models/<run name>/<version>`` (``export_dir`` replaces ``saved_models``).
    SIGINT / SIGTERM save the backup at the current step and raise
    :class:`keras_resnet.errors.Stopped` (a :class:`RunStopped`) saying how to resume.

    Returns:
        ``(history, model)``: ``history`` maps ``epoch``, ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``, ... to lists over all epochs of the run.
    """
    options = dict(locals())
    overwrite, new_run = options.pop("overwrite"), options.pop("new_run")
    options["recipe_name"] = options.pop("recipe")
    return run(TrainConfig.from_kwargs(**options), overwrite=overwrite, new_run=new_run)


def run(config, *, overwrite=False, new_run=False, resume_command=python_resume_command):
    """Train what ``config`` (a checked :class:`TrainConfig`) describes; see :func:`train`.

    ``resume_command(output)`` is the text a stop message gives for resuming the run.
    """
    if config.output is not None and rf.folder_state(config.output, overwrite) == "finished":
        return _finished(config.output)
    signals = cb.Signals()
    with signals.catch():
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        dist = build_strategy(config.strategy)
        from keras_resnet.data import load_data

        data = load_data(config.dataset, data_dir=config.data_dir, tfds_data_dir=config.tfds_data_dir,
                         manual_dir=config.manual_dir, seed=config.seed)
        if config.val_fraction > 0:  # never select on the test split
            data = data.with_validation_holdout(config.val_fraction, seed=config.seed)
        requested = config.precision
        config, facts = resolve(config, data, dist)
        output, state, found = choose_folder(config, overwrite=overwrite, new_run=new_run,
                                             started=facts["started"])
        config = config.replace(output=output)
        if state == "finished":
            return _finished(output)
        if state == "resume":  # the normalisation the run trained with, as recorded, not re-derived
            config = config.replace(preprocessing=rf.read_config(output).get("preprocessing", config.preprocessing))
        chief = is_chief(dist)
        pretrained = _pretrained(config, facts, state)
        facts["started"] = _prepare_folder(config, facts, state, chief)
        phases = ft.plan_phases(config)
        saved = rf.read_meta(os.path.join(output, rf.BACKUP)) if state == "resume" else None
        phase = phases[(saved or {}).get("phase", 0)]  # the phase the backup was saved in
        with dtype_policy(config.precision), dist.scope():
            net, learning_rate = _build(config, facts, dist, phase, pretrained)
        facts["parameters"] = net.count_params()
        if chief:
            if pretrained is not None:  # config.json says what was loaded, before the first step
                write_json_atomic(os.path.join(output, rf.CONFIG), {**config.to_json(), **facts})
            print("\n".join(header(config, facts, data, dist, requested)), flush=True)
        job = FitJob(config, facts, data, dist, chief=chief, signals=signals, resume_command=resume_command)
        def switch(next_phase):
            with dtype_policy(config.precision), dist.scope():
                return compile_phase(net, config, facts, dist, next_phase)

        return job.fit(net, learning_rate, resume=state == "resume", found=found, phases=phases, phase=phase,
                       switch=switch)


def _finished(output):
    from keras_resnet.saving import register_serializables

    register_serializables()  # keras_resnet's layers and recipe, whoever imported Keras first
    print(f"{output} holds a finished run (metrics.json): not training again. "
          "Pass overwrite=True (--overwrite) or another output folder to train anew.")
    return (rf.read_history(os.path.join(output, rf.HISTORY)),
            keras.saving.load_model(os.path.join(output, "model.keras"), compile=False))


def _pretrained(config, facts, state):
    """The pretrained tensors to load (None without weights, or when resuming: the backup
    holds the trained weights; config.json keeps what the first start loaded)."""
    if not config.weights:
        return None
    if state == "resume":
        previous = rf.read_config(config.output).get("pretrained") or {}
        facts["pretrained"] = {**facts["pretrained"], **previous}
        facts["resumed_from_backup"] = True
        return None
    head_kept = ft.keeps_head(config, facts["pretrained"])
    return ft.read_pretrained(config, head_kept=head_kept)


def _prepare_folder(config, facts, state, chief):
    """Check a folder to resume against ``config``, then (chief) write config.json first, so
    the folder reads as a run folder from then on. Returns when the run first started."""
    output, started = config.output, facts["started"]
    if state == "resume":
        previous = rf.read_config(output)
        changes = config.changes(previous)
        if changes:
            raise ValueError(
                f"output holds a run started with other options ({describe_changes(changes)}); rerun "
                "with the same options, overwrite=True (--overwrite) or another output. "
                f"Received: output={output!r}")
        started = previous.get("started", started)
    if chief:
        if state == "overwrite":
            shutil.rmtree(output)
        if state == "restart" and os.path.exists(os.path.join(output, rf.HISTORY)):
            os.remove(os.path.join(output, rf.HISTORY))
        write_json_atomic(os.path.join(output, rf.CONFIG), {**config.to_json(), **facts, "started": started})
        os.makedirs(os.path.join(output, "backup"), exist_ok=True)
    return started


def _build(config, facts, dist, phase, pretrained=None):
    """The model (float32 classifier under mixed precision), its pretrained tensors loaded,
    set up for ``phase`` and compiled with that phase's recipe."""
    from keras_resnet import get_model

    kwargs = dict(weights=None, input_shape=(config.image_size, config.image_size, 3),
                  classes=config.num_classes, **config.model_options)
    if config.zero_init_residual:
        kwargs["zero_init_residual"] = True
    # one replica: plain BatchNorm already sees the whole batch (and Keras' synchronized
    # variant differs from it numerically there)
    if config.sync_bn and facts["replicas"] > 1:
        kwargs["synchronized_bn"] = True
    net = get_model(config.model, **kwargs)
    if config.precision != "fp32" and net.output.dtype != "float32":
        raise ValueError(f"{config.model} under {config.precision} does not end in float32. "
                         f"Received: precision={config.precision!r}")
    if pretrained is not None:  # inside the strategy's scope: every replica gets the same values
        facts["pretrained"].update(ft.load_pretrained(net, pretrained), head_kept=pretrained.head_kept)
    return net, compile_phase(net, config, facts, dist, phase)


def compile_phase(net, config, facts, dist, phase):
    """Make ``phase``'s layers trainable and compile ``net`` with its optimizer and schedule
    (over the phase's epochs), built over the trainable variables only; returns the schedule."""
    ft.enter_phase(net, phase)
    learning_rate = compile_model(
        net, steps_per_epoch=facts["steps_per_epoch"], epochs=phase.epochs,
        global_batch_size=config.global_batch_size, num_classes=config.num_classes, lr=phase.lr,
        schedule=config.schedule, warmup_epochs=phase.warmup_epochs, label_smoothing=config.label_smoothing,
        weight_decay=config.weight_decay, momentum=config.momentum, nesterov=config.nesterov,
        jit_compile=config.jit_compile, strategy=dist)
    net.optimizer.build(net.trainable_variables)
    return learning_rate
