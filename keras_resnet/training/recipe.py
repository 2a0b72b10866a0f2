"""The ResNet training recipe: learning-rate schedule, loss, weight decay and ``compile_model``.

Backend-neutral (``keras`` and ``keras.ops`` only), so the same recipe compiles a model on
TensorFlow, JAX or PyTorch: ``keras-resnet benchmark`` times exactly what ``keras-resnet
train`` trains, also on a GPU machine that has JAX but no TensorFlow.
:mod:`keras_resnet.training` (TensorFlow: data, strategies, run folders) re-exports these
names; importing this module imports neither TensorFlow nor the rest of the package.

The recipe follows He et al. 2015: SGD with momentum 0.9, learning rate scaled linearly
with the global batch (``lr * batch / 256``, Goyal et al. 2017), step decay /10 at 50%
and 75% of training (or cosine), weight decay on conv/dense kernels only, and the
paper's warm-up for ResNet-110 on CIFAR (lr / 10 until the training error < 80%).
"""

import contextlib
import math

import keras
from keras import ops

from keras_resnet import specs
from keras_resnet.training.config import PAPER_WARMUP, RECIPE_NAMES, SCHEDULES  # noqa: F401
from keras_resnet.utils import all_layers

# Recipe defaults per dataset family; `lr` is for a global batch of 256 and is scaled
# linearly to the actual global batch. `weight_decay` is the coefficient of the
# gradient term (grad += weight_decay * w), i.e. the papers' "weight decay 0.0001".
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "schedule", "warmup_epochs", "label_smoothing",
                 "weight_decay")
RECIPES = {name: dict(zip(RECIPE_FIELDS, row)) for name, row in {
    # Bundled digits (1,797 8x8 images at 32x32): >= 95% test accuracy in a few CPU minutes.
    "digits": (8, 64, 0.4, "cosine", 1.0, 0.0, 5e-4),
    # He et al. 2015, sec. 4.2: batch 128, lr 0.1 (0.2 per 256), /10 at 32k and 48k of 64k
    # iterations, weight decay 1e-4, momentum 0.9 (164 epochs of CIFAR-10's 391 steps).
    "cifar": (164, 128, 0.2, "step", 0.0, 0.0, 1e-4),
    # He et al. 2015, sec. 3.4: batch 256, lr 0.1 divided by 10 twice, weight decay 1e-4;
    # 90 epochs as in torchvision / Goyal et al. 2017.
    "imagenet": (90, 256, 0.1, "step", 0.0, 0.0, 1e-4),
}.items()}
# --recipe paper on the CIFAR family: iterations of He et al. 2015, sec. 4.2
PAPER_ITERATIONS = 64_000
# A run of fewer epochs than this is short: cosine decay after a warm-up (at most a quarter
# of the run) instead of the family's step schedule, which assumes the paper's length.
SHORT_RUN_EPOCHS = 50
SHORT_RUN_WARMUP = 1.0
# BatchNorm momentum of the auto recipe: the moving statistics average over about a
# quarter of an epoch, 1 - 4 / steps_per_epoch, within [0.9, 0.99] (0.99 is Keras'
# default and what any run of 400 or more steps an epoch keeps).
BN_MOMENTUM_RANGE = (0.9, 0.99)
BN_WINDOW_EPOCHS = 0.25


def recipe_family(dataset_name, image_size):
    """The key of :data:`RECIPES` for a dataset: "digits", or by input size "cifar" /
    "imagenet" (:func:`keras_resnet.specs.family_for_image_size`). Folders pass ``dataset_name=""``."""
    return "digits" if dataset_name == "digits" else specs.family_for_image_size(image_size)


def bn_momentum_for(steps_per_epoch):
    """The auto recipe's BatchNorm momentum: statistics over about a quarter of an epoch."""
    low, high = BN_MOMENTUM_RANGE
    momentum = 1.0 - 1.0 / (BN_WINDOW_EPOCHS * steps_per_epoch)
    return min(high, max(low, math.floor(momentum * 10_000) / 10_000))  # 4 digits, window <= a quarter


def default_recipe(family, *, model_info=None, epochs=None, warmup_given=False, recipe="auto"):
    """``RECIPES[family]`` adjusted to the model and run length, and why (``"reason"``).

    ``recipe="paper"`` keeps the family's paper recipe as it is, with the paper's warm-up
    for CIFAR models of depth >= 110. ``"auto"`` also does that, and a short run (fewer
    than :data:`SHORT_RUN_EPOCHS` epochs) gets cosine decay after a warm-up of at most a
    quarter of the run; its BatchNorm momentum follows the steps per epoch
    (:func:`bn_momentum_for`, set by the caller once steps are known: ``"bn_momentum"``
    is ``"auto"`` here).
    """
    if recipe == "paper" and family == "digits":
        family = "cifar"  # the paper has no digits recipe: its CIFAR one, for 32x32 images
    row = dict(RECIPES[family])
    info = model_info or {}
    run_epochs = epochs or row["epochs"]
    reasons = []
    if family == "cifar" and info.get("family") == "cifar" and info.get("depth", 0) >= 110:
        row["warmup_epochs"] = PAPER_WARMUP
        reasons.append("the paper's warm-up for depth >= 110")
    if recipe == "auto":
        row["bn_momentum"] = "auto"
        if run_epochs < SHORT_RUN_EPOCHS and row["schedule"] == "step":
            row["schedule"] = "cosine"
            if row["warmup_epochs"] != PAPER_WARMUP:
                row["warmup_epochs"] = SHORT_RUN_WARMUP
            reasons.append(f"a short run ({run_epochs} < {SHORT_RUN_EPOCHS} epochs): cosine with warm-up")
    if not warmup_given and row["warmup_epochs"] != PAPER_WARMUP:  # never more than a quarter
        row["warmup_epochs"] = min(row["warmup_epochs"], run_epochs / 4)
    source = {"digits": "the bundled digits recipe", "cifar": "He et al. 2015 sec. 4.2 (images <= 64 px)",
              "imagenet": "He et al. 2015 sec. 3.4 (images > 64 px)"}[family]
    row["reason"] = f"{recipe}: " + "; ".join([source] + reasons)
    return row


@keras.saving.register_keras_serializable(package="keras_resnet")
class ResNetLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up, then step decay (/10 at each milestone fraction) or cosine decay to 0.

    Args:
        peak_lr: learning rate after warm-up (already scaled to the global batch).
        total_steps: steps of the whole run.
        schedule: ``"step"`` or ``"cosine"``.
        warmup_steps: linear warm-up from ``peak_lr / warmup_steps`` to ``peak_lr``.
        milestones: fractions of ``total_steps`` where step decay divides by 10.
        hold_low: start at ``peak_lr / 10`` and stay there until :class:`LowLrUntilError`
            releases it (He et al. 2015, sec. 4.2, for ResNet-110).
    """

    def __init__(
        self,
        peak_lr,
        total_steps,
        *,
        schedule="step",
        warmup_steps=0,
        milestones=(0.5, 0.75),
        hold_low=False,
    ):
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.milestones = tuple(float(m) for m in milestones)
        self.hold_low = bool(hold_low)
        # 1.0 while the paper's warm-up holds the rate low; a variable so that the
        # compiled train step reads it and the backup can store it.
        self.holding = keras.Variable(
            1.0 if hold_low else 0.0, trainable=False, dtype="float32", name="lr_holding"
        )

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.peak_lr
        if self.schedule == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            lr = 0.5 * peak * (1.0 + ops.cos(math.pi * progress))
        else:
            lr = ops.convert_to_tensor(peak, "float32")
            for fraction in self.milestones:
                boundary = float(round(fraction * self.total_steps))
                lr = ops.where(step >= boundary, lr * 0.1, lr)
        if self.warmup_steps > 0:
            ramp = peak * (step + 1.0) / self.warmup_steps
            lr = ops.where(step < self.warmup_steps, ramp, lr)
        return ops.where(self.holding > 0.5, peak * 0.1, lr)

    def get_config(self):
        return dict(
            peak_lr=self.peak_lr,
            total_steps=self.total_steps,
            schedule=self.schedule,
            warmup_steps=self.warmup_steps,
            milestones=list(self.milestones),
            hold_low=False,  # a reloaded schedule is past any warm-up
        )


@keras.saving.register_keras_serializable(package="keras_resnet")
class SparseCrossentropyWithSmoothing(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing (Szegedy et al. 2016).

    Keras' ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this one-hot
    encodes the integer labels and calls ``categorical_crossentropy``.
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config


def apply_weight_decay(model, weight_decay):
    """L2 weight decay on conv and dense kernels only; BatchNorm and biases are exempt.

    Adds ``weight_decay / 2 * sum(w**2)`` to the loss for every kernel, so that SGD sees
    ``grad + weight_decay * w``: the papers' (and Caffe's / PyTorch's) weight decay,
    coupled with momentum as in He et al. 2015. Returns the number of kernels decayed.
    """
    weight_decay = float(weight_decay)
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None
    count = 0
    for layer in all_layers(model):
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            variable = getattr(layer, attr, None)
            if isinstance(variable, keras.Variable) and variable.trainable:
                variable.regularizer = regularizer
                if hasattr(layer, attr + "_regularizer"):
                    setattr(layer, attr + "_regularizer", regularizer)  # so that it serializes
                count += 1
    return count


def _check_recipe(*, lr, schedule, warmup_epochs, label_smoothing, weight_decay, momentum, epochs):
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number. Received: lr={lr!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}. Received: schedule={schedule!r}")
    if warmup_epochs != PAPER_WARMUP and not (
        isinstance(warmup_epochs, (int, float)) and 0 <= warmup_epochs < max(epochs, 1)
    ):
        raise ValueError(
            f"warmup_epochs must be a number in [0, epochs={epochs}) or {PAPER_WARMUP!r}. "
            f"Received: warmup_epochs={warmup_epochs!r}"
        )
    if not (isinstance(label_smoothing, (int, float)) and 0 <= label_smoothing < 1):
        raise ValueError(f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing!r}")
    if not (isinstance(weight_decay, (int, float)) and 0 <= weight_decay < 1):
        raise ValueError(f"weight_decay must be in [0, 1). Received: weight_decay={weight_decay!r}")
    if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
        raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum!r}")


def learning_rate_schedule(*, lr, global_batch_size, steps_per_epoch, epochs, schedule, warmup_epochs):
    """The :class:`ResNetLearningRate` :func:`compile_model` gives an optimizer: ``lr`` (per
    256 images) scaled to the global batch, over ``epochs`` of ``steps_per_epoch`` steps."""
    paper = warmup_epochs == PAPER_WARMUP
    return ResNetLearningRate(
        lr * global_batch_size / 256.0,
        steps_per_epoch * epochs,
        schedule=schedule,
        warmup_steps=0 if paper else round(warmup_epochs * steps_per_epoch),
        hold_low=paper,
    )


def compile_model(
    model,
    *,
    steps_per_epoch,
    epochs,
    global_batch_size,
    num_classes=None,
    lr=0.1,
    schedule="step",
    warmup_epochs=0.0,
    label_smoothing=0.0,
    weight_decay=1e-4,
    momentum=0.9,
    nesterov=False,
    jit_compile=False,
    strategy=None,
):
    """Compile ``model`` with the ResNet recipe; returns its :class:`ResNetLearningRate`.

    ``lr`` is the rate for a global batch of 256, scaled to ``lr * global_batch_size / 256``.
    ``warmup_epochs`` is a number of linear warm-up epochs or ``"paper"``. The optimizer,
    loss and metrics are created inside ``strategy.scope()`` (the current strategy when
    ``strategy`` is None). Metrics: ``accuracy`` and, with more than 5 classes, ``top5``.
    """
    _check_recipe(lr=lr, schedule=schedule, warmup_epochs=warmup_epochs, epochs=epochs,
                  label_smoothing=label_smoothing, weight_decay=weight_decay, momentum=momentum)
    num_classes = num_classes or int(model.output_shape[-1])
    # Under TensorFlow a caller inside `strategy.scope()` needs nothing more; `strategy`
    # names a scope to enter here (optimizer and metric variables are created inside it).
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        apply_weight_decay(model, weight_decay)
        learning_rate = learning_rate_schedule(lr=lr, global_batch_size=global_batch_size,
                                               steps_per_epoch=steps_per_epoch, epochs=epochs,
                                               schedule=schedule, warmup_epochs=warmup_epochs)
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)
        if label_smoothing > 0:
            loss = SparseCrossentropyWithSmoothing(label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)
    return learning_rate
