""":class:`HyperResNet`: a keras-tuner HyperModel over the spec table and the training recipe.

It samples a model from :mod:`keras_resnet.specs` (variant, depth, width,
squeeze-and-excitation, stochastic depth) and builds it with :func:`keras_resnet.ResNet` /
:func:`keras_resnet.CifarResNet`; it samples the recipe (learning rate, weight decay, label
smoothing, warm-up, schedule, augmentation) and fits it with the pieces ``keras-resnet
train`` uses: the :mod:`keras_resnet.data` pipelines, the recipe of
:mod:`keras_resnet.training.recipe` (defaults and ``compile_model``), its strategies and
callbacks.
"""

import math

import keras
import keras_tuner

from keras_resnet import specs
from keras_resnet.models import CifarResNet, ResNet
from keras_resnet.training.callbacks import NaNGuard
from keras_resnet.training.config import DataConfig
from keras_resnet.training.recipe import bn_momentum_for, compile_model, default_recipe, recipe_family
from keras_resnet.tuning.space import _keys_only, _sample, narrow_space
from keras_resnet.utils import check_positive_int, dtype_policy

VAL_FRACTION = DataConfig().val_fraction  # as keras-resnet train's --val-fraction default

# Squeeze-and-excitation reduction when "se" is on: r = 16 (Hu et al. 2018).
SE_RATIO = 1 / 16


class TrialInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM during a trial. A KeyboardInterrupt, so keras-tuner neither records
    the trial as failed nor goes on: the trial stays RUNNING, and a rerun runs it again."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopOnSignal(keras.callbacks.Callback):
    """Stop the trial at the next step once ``signals`` caught a signal."""

    def __init__(self, signals):
        super().__init__()
        self.signals = signals

    def on_train_batch_end(self, batch, logs=None):
        if self.signals is not None and self.signals.signum is not None:
            raise TrialInterrupted(self.signals.signum)


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
                 steps_per_epoch=None, strategy="auto", precision="auto", seed=0, weights=None,
                 model="ResNet20", name="hyper_resnet"):
        super().__init__(name=name, tunable=True)
        self.weights, self.model_name, self.pretrained, self.inputs = weights, model, None, None
        if weights is not None:  # fine-tuning: the architecture is the weights', the lr is searched
            from keras_resnet.training import finetune

            if model not in specs.MODELS:
                raise ValueError(f"model must be a name from `keras-resnet list`. Received: model={model!r}")
            self.inputs = finetune.weights_input(model, weights)
            image_size = image_size or self.inputs["image_size"]
            space = finetune_space(model, space)
        for key, value in (("image_size", image_size), ("batch_size", batch_size),
                           ("steps_per_epoch", steps_per_epoch)):
            if value is not None:
                check_positive_int(key, value)
        if image_size is not None and image_size < 32:
            raise ValueError(f"image_size must be at least 32. Received: image_size={image_size!r}")
        from keras_resnet.hardware import resolve_precision

        self.precision = resolve_precision(precision)
        # check the space before loading anything (values again once the size is known)
        narrow_space(space if image_size else _keys_only(space), specs.family_for_image_size(image_size or 32))
        if isinstance(data, str) or data_dir is not None:
            from keras_resnet.data import load_data

            data = load_data(data, data_dir=data_dir, seed=seed)
        # trials are compared on validation data, never on test: held out of train where
        # the dataset has none, as keras-resnet train does
        self.data = data = data.with_validation_holdout(VAL_FRACTION, seed=seed)
        self.image_size = image_size or data.image_size
        self.family = specs.family_for_image_size(self.image_size)
        self.space = narrow_space(space, self.family)
        self.seed = seed
        self._declaring = False
        self.signals = None  # a keras_resnet.training.callbacks.Signals while a search runs
        self.max_steps = steps_per_epoch
        self.recipe = default_recipe(recipe_family(data.name, self.image_size))
        self.batch_size = batch_size or self.recipe["batch_size"]
        if isinstance(strategy, str):
            from keras_resnet.training.strategy import build_strategy

            strategy = build_strategy(strategy)
        self.strategy = strategy
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
        if self.inputs is not None:
            return self.inputs["preprocessing"]
        return specs.PREPROCESSING["cifar" if self.family == "cifar" else values["variant"]]

    def eval_transform(self, values):
        """A trial's validation transform: with weights, what ``train`` would evaluate with
        (:func:`keras_resnet.training.finetune.run_eval_transform`); else None (the
        augmentation's)."""
        if self.inputs is None:
            return None
        from keras_resnet.export.transform import EvalTransform
        from keras_resnet.training import finetune

        transform, _ = finetune.run_eval_transform(values["augmentation"], self.inputs["eval_transform"],
                                                   self.image_size, self.inputs.get("set"))
        return EvalTransform(**transform)

    def declare_hyperparameters(self, hp):
        self.values(hp)

    def build(self, hp):
        values = self.values(hp)
        if self._declaring:  # keras-tuner's space discovery: no model needed
            return None
        return self.build_model(values)

    def build_model(self, values):
        """The model of one set of sampled values (e.g. ``best.json``'s hyperparameters)."""
        options = dict(bn_momentum=bn_momentum_for(self.steps_per_epoch))  # the auto recipe's
        options.update(
            width_multiplier=float(values["width_multiplier"]),
            se_ratio=SE_RATIO if values["se"] else None,
            stochastic_depth_rate=float(values["stochastic_depth_rate"]),
        )
        if self.weights is not None:
            return self._build_pretrained(options)
        builder = CifarResNet if self.family == "cifar" else ResNet
        with dtype_policy(self.precision):
            return builder(values["depth"], variant=values["variant"], weights=None,
                           input_shape=(self.image_size, self.image_size, 3),
                           classes=self.num_classes, **options)

    def _build_pretrained(self, options):
        """The named model with the pretrained backbone loaded and a fresh head, every
        layer trainable (BatchNorm adapting, as ``train`` fine-tunes by default)."""
        import types

        from keras_resnet import get_model
        from keras_resnet.training import finetune

        options = dict(self.inputs["options"], bn_momentum=options["bn_momentum"])
        if self.pretrained is None:  # read the file once per search
            self.pretrained = finetune.read_pretrained(types.SimpleNamespace(
                model=self.model_name, weights=self.weights, model_options=options, num_classes=self.num_classes))
        with dtype_policy(self.precision):
            net = get_model(self.model_name, weights=None, input_shape=(self.image_size, self.image_size, 3),
                            classes=self.num_classes, **options)
        finetune.load_pretrained(net, self.pretrained)
        finetune.enter_phase(net, finetune.Phase(0, 0, 1, "all", finetune.FREEZE_BN, 0.0, 0.0))
        return net

    def fit(self, hp, model, *args, epochs=1, initial_epoch=0, callbacks=None, verbose="auto", **kwargs):
        if args or kwargs:
            raise ValueError(
                "HyperResNet.fit trains on its own data; pass only epochs, callbacks and "
                f"verbose to tuner.search(). Received: {list(kwargs) or list(args)}"
            )
        return fit_with_training(self, model, self.values(hp), epochs=epochs, initial_epoch=initial_epoch,
                                 callbacks=callbacks or [], verbose=verbose)


# The lr searched when fine-tuning pretrained weights (per 256 images): around the
# training recipe's fine-tuning rate (a tenth of the CIFAR / ImageNet rates of 0.2 / 0.1).
FINETUNE_LR_RANGE = (0.002, 0.2)


def finetune_space(model, space):
    """The search space of a fine-tuning search: the architecture keys fixed to ``model``'s
    (refused in ``space``), the lr over :data:`FINETUNE_LR_RANGE` unless narrowed."""
    info = specs.model_info(model)
    fixed = dict(variant=info["variant"], depth=info["depth"], width_multiplier=1.0, se=False,
                 stochastic_depth_rate=0.0)
    space = dict(space or {})
    given = sorted(set(space) & set(fixed))
    if given:
        raise ValueError(f"space must not hold {given} when fine-tuning: the weights fix the architecture "
                         f"({model}). Received: space={space!r}")
    return {**fixed, "lr": FINETUNE_LR_RANGE, **space}


def fit_with_training(hypermodel, model, values, *, epochs, initial_epoch=0, callbacks=(), verbose="auto"):
    """Compile ``model`` with the training recipe and sampled values, and fit it on the
    training pipelines of :mod:`keras_resnet.data` with the training module's callbacks.

    Returns the ``keras.callbacks.History``. A diverged run fails the trial with its reason.
    """
    steps, global_batch = hypermodel.steps_per_epoch, hypermodel.global_batch_size
    learning_rate = compile_model(
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
    nan_guard = NaNGuard()
    common = dict(image_size=hypermodel.image_size, preprocessing=hypermodel.preprocessing(values))
    train_data = hypermodel.data.train_dataset(
        global_batch, augmentation=values["augmentation"], seed=hypermodel.seed,
        start_epoch=initial_epoch, epochs=epochs, **common)
    val_data = hypermodel.data.eval_dataset(
        "val", global_batch, augmentation=values["augmentation"],
        eval_transform=hypermodel.eval_transform(values), **common)
    history = model.fit(train_data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                        validation_data=val_data, callbacks=[nan_guard, StopOnSignal(hypermodel.signals), *callbacks],
                        verbose=verbose)
    if nan_guard.fired:
        epoch, step, loss = nan_guard.fired
        raise keras_tuner.errors.FailedTrialError(
            f"the loss became {loss} at epoch {epoch + 1}, step {step} (lr={values['lr']:.3g})")
    return history


