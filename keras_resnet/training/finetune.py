"""Fine-tuning from pretrained weights: ``train(weights=...)``, ``keras-resnet train --weights``.

What the weights decide, and what happens to them:

- **Which tensors load** (:func:`read_pretrained`, :func:`load_pretrained`). The named model
  is built once with ``weights=`` (any value :func:`keras_resnet.get_model` accepts:
  ``"imagenet"``, a named set, a file, a keras-hub preset) and without its classifier; every
  variable of the backbone is copied, by layer name, into the model that trains. Its
  ``predictions`` layer is initialised afresh for the dataset's classes, except where the
  dataset is the one the set was trained on and the classes agree (a CIFAR-10 set on
  CIFAR-10): then the published head is kept too. As Model Garden's ``init_checkpoint``
  with ``init_checkpoint_modules: backbone``. A resumed run never reads the file again: its
  backup holds the trained weights.
- **How images enter** (:func:`weights_input`). The preprocessing (caffe / tf / torch mode,
  or the set's own mean / std where no mode has it),
  the default image size (the set's eval crop: 224, or 32 for the CIFAR sets) and the
  evaluation transform follow the weights; an explicit ``image_size`` wins.
- **How training goes** (:func:`plan_phases`). ``finetune`` says how (``"auto"``: the
  winner of ``benchmarks/finetune_grid.py``, ``"full"``; ``"two-phase"`` when ``head_epochs``
  is given):

  - ``"full"``: every layer from the first step at ``finetune_lr`` (the recipe's own lr by
    default, no warm-up), as timm's ``train.py --pretrained`` and Model Garden's
    ``init_checkpoint`` fine-tune. Measured best at equal epochs: the figures are in
    BENCHMARKS.md, "Fine-tuning from pretrained weights".
  - ``"two-phase"``: phase 1 trains the head alone on a frozen backbone whose BatchNorm is
    in inference mode, at the recipe's lr (keras.io's transfer-learning guide; fastai's
    ``fine_tune`` freeze epoch); phase 2 trains every layer at ``finetune_lr``.
  - ``"head"``: the head alone for the whole run (a linear probe on frozen features).

  BatchNorm adapts while the backbone trains (its batch statistics normalise, its moving
  statistics follow the new data) unless ``freeze_bn=True`` keeps the pretrained ones.
  Adapting was measured ahead of frozen both at a batch of 128 and at the batch of 11 the
  auto recipe picks for a folder of 120 images (BENCHMARKS.md), so it is the default at
  every batch; freezing (detectron2's practice for batches of 1-2 images a device) stays
  a choice.

Frozen variables cost nothing: they are ``trainable=False`` when the phase is compiled, so
the train step asks the tape for no gradient of them (TensorFlow does not back-propagate
into a frozen backbone at all), the optimizer is built over the trainable variables only
(no momentum slots for the rest), and weight decay is attached to trainable kernels only.
Each phase compiles its own optimizer and learning-rate schedule; the backup records the
phase, so a run stopped in phase 1 or 2 resumes into the same phase bit-exactly.
BatchNorm is frozen with :func:`keras_resnet.normalization.freeze_batch_norm`, not with
``training=False``, which does not hold once the layers are unfrozen (keras-team/keras#20285).
"""

from __future__ import annotations

import dataclasses
import math

from keras_resnet import specs

HEAD = "predictions"  # the classifier layer of every builder of this package
# Defaults of a fine-tuning run (the auto recipe with weights; each is a train keyword).
FINETUNE_EPOCHS = 8  # benchmarks/finetune_grid.py's budget
# finetune_lr = lr x this: the backbone at the recipe's own rate. A tenth (keras.io's guide lowers
# it 100x) fine-tuned ResNet-20 from CIFAR-10 onto MNIST 15 points worse (BENCHMARKS.md).
FINETUNE_LR_FACTOR = 1.0
HEAD_EPOCH_FRACTION = 0.25  # two-phase: the first quarter of the run (at least one epoch) trains the head
# BatchNorm adapts by default at any batch: frozen BN lost to adapting BN at a batch of 128
# (collapsing to chance in 4 of 9 runs) and at the auto recipe's batch of 11 for 120 images
# (BENCHMARKS.md, "Fine-tuning from pretrained weights").
FREEZE_BN = False
# Small datasets: the auto recipe lowers the batch (never below MIN_BATCH) so that an epoch
# has about MIN_STEPS steps.
MIN_STEPS, MIN_BATCH = 10, 8


# ---------------------------------------------------------------------- the weights


def weight_set(model: str, weights) -> object | None:
    """The published set ``weights`` names for ``model``, by name, by a published file's name
    or by a file's content (None for "imagenet", another file, ...)."""
    from keras_resnet.weights import loading, published

    if published.is_set_name(weights):
        return published.find_set(model, weights)
    ws, _ = loading.resolve_file(weights)
    return ws if ws is not None and ws.model == model else None


def _tfds_name(dataset: str) -> str:
    """A set's dataset ("ImageNet-1k", "CIFAR-10") as the tfds name ``--dataset`` takes."""
    return {"imagenet-1k": "imagenet2012"}.get(dataset.lower(), dataset.lower().replace("-", ""))


def weights_input(model: str, weights) -> dict:
    """How images enter a model with these weights, from the registry alone (no file read):
    ``{"image_size", "preprocessing" (the mode that reproduces the set's mean / std, else
    ``{"mean", "std"}`` themselves: chenyaofo's and osmr's CIFAR statistics),
    "eval_transform" (the set's, as a dict, or None),
    "trained_on" (the tfds name of the set's data, or None), "published_classes",
    "options" (builder options the set's architecture needs, e.g. akamaster's shortcut),
    "set" (the set's name, only where there is one)}``."""
    info = specs.model_info(model)
    facts = dict(image_size=info["input_size"], preprocessing=info["preprocessing"], eval_transform=None,
                 trained_on="imagenet2012" if weights == "imagenet" else None,
                 published_classes=1000 if weights == "imagenet" else None, options={})
    ws = weight_set(model, weights)
    if ws is None:
        return facts
    from keras_resnet.preprocessing import preprocessing_for

    t = ws.transform
    options = ws.builder_options() if hasattr(ws, "builder_options") else {}
    return dict(image_size=t.crop, preprocessing=preprocessing_for(t.mean, t.std), eval_transform=t.as_dict(),
                trained_on=_tfds_name(getattr(ws, "dataset", "ImageNet-1k")),
                published_classes=getattr(ws, "classes", 1000), options=options, set=ws.name)


def keeps_head(config, weights_facts) -> bool:
    """The published head stays where the run's data is the set's own, classes agreeing."""
    return (config.data_dir is None and weights_facts.get("trained_on") is not None
            and config.dataset == weights_facts["trained_on"]
            and config.num_classes == weights_facts.get("published_classes"))


@dataclasses.dataclass
class Pretrained:
    """The tensors of a pretrained backbone, by layer name, read once before training."""

    weights: str
    tensors: dict  # layer name -> [numpy arrays], in the layer's variable order
    head_kept: bool

    def count(self) -> int:
        return sum(len(v) for v in self.tensors.values())


def read_pretrained(config, *, head_kept: bool = False) -> Pretrained:
    """Build ``config.model`` with ``weights=config.weights`` (without its classifier unless
    ``head_kept``) and keep its tensors as numpy arrays."""
    from keras_resnet import get_model

    options = {k: v for k, v in (config.model_options or {}).items() if k != "bn_momentum"}
    kwargs = dict(weights=config.weights, include_top=head_kept)
    if head_kept:
        kwargs["classes"] = config.num_classes
    source = get_model(config.model, **kwargs, **options)
    tensors = {layer.name: [v.numpy() for v in layer.weights] for layer in source.layers if layer.weights}
    del source
    return Pretrained(weights=str(config.weights), tensors=tensors, head_kept=head_kept)


def load_pretrained(net, pretrained: Pretrained) -> dict:
    """Assign ``pretrained`` into ``net`` layer by layer; ``{"tensors_loaded", "fresh"}``
    (``fresh``: the variables left as initialised). ValueError naming the first layer whose
    shapes differ, or a layer of the file the model lacks, before anything is assigned."""
    layers = {layer.name: layer for layer in net.layers if layer.weights}
    extra = sorted(set(pretrained.tensors) - set(layers))
    if extra:
        raise ValueError(f"weights hold layers the model lacks, e.g. {extra[:3]}. "
                         f"Received: weights={pretrained.weights!r}")
    for name, values in pretrained.tensors.items():
        shapes = [tuple(v.shape) for v in layers[name].weights]
        if shapes != [tuple(v.shape) for v in values]:
            raise ValueError(f"weights do not match layer {name!r}: {[v.shape for v in values]} in the "
                             f"weights, {shapes} in the model. Received: weights={pretrained.weights!r}")
    for name, values in pretrained.tensors.items():
        for variable, value in zip(layers[name].weights, values):
            variable.assign(value)
    fresh = [v.path for name, layer in layers.items() if name not in pretrained.tensors for v in layer.weights]
    return dict(tensors_loaded=pretrained.count(), fresh=fresh)


# ------------------------------------------------------------------------- the phases


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs ``[first_epoch, end_epoch)`` of a run, trained with one optimizer."""

    index: int
    first_epoch: int
    end_epoch: int
    trains: str  # "all" or "head"
    freeze_bn: bool
    lr: float  # per 256 images, scaled linearly to the global batch
    warmup_epochs: float | str

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.first_epoch

    def describe(self, global_batch_size: int) -> str:
        what = ("the head alone on a frozen backbone (BatchNorm in inference mode)" if self.trains == "head"
                else "all layers" + (", BatchNorm frozen" if self.freeze_bn else ""))
        span = f"epoch {self.first_epoch + 1}" if self.epochs == 1 else \
            f"epochs {self.first_epoch + 1}-{self.end_epoch}"
        return f"{span}: {what}, lr {self.lr * global_batch_size / 256:.4g}"


def plan_phases(config) -> list:
    """The phases of a resolved run: one for a run from scratch; with weights, as
    ``config.finetune`` says (see the module docstring)."""
    c = config
    if not c.weights:
        return [Phase(0, 0, c.epochs, "all", False, c.lr, c.warmup_epochs)]
    if c.finetune == "head":
        return [Phase(0, 0, c.epochs, "head", True, c.lr, 0.0)]
    if c.finetune == "full":
        return [Phase(0, 0, c.epochs, "all", c.freeze_bn, c.finetune_lr, c.warmup_epochs)]
    head = min(c.head_epochs, c.epochs)
    phases = [Phase(0, 0, head, "head", True, c.lr, 0.0)]
    if head < c.epochs:
        warmup = c.warmup_epochs if c.warmup_epochs == "paper" else min(c.warmup_epochs, (c.epochs - head) / 4)
        phases.append(Phase(1, head, c.epochs, "all", c.freeze_bn, c.finetune_lr, warmup))
    return phases


def phase_of(phases, epoch: int) -> Phase:
    """The phase that trains ``epoch`` (the last phase after the run)."""
    return next((p for p in phases if p.first_epoch <= epoch < p.end_epoch), phases[-1])


def enter_phase(net, phase: Phase) -> None:
    """Set which layers train in ``phase``: the head alone, or all (BatchNorm frozen when
    ``phase.freeze_bn``). Compile afterwards: Keras reads ``trainable`` when it compiles."""
    from keras_resnet.normalization import BatchNormalization, freeze_batch_norm
    from keras_resnet.utils import all_layers

    for layer in all_layers(net):
        if isinstance(layer, BatchNormalization):
            layer.frozen = False  # thawed here; frozen again below where the phase says so
        layer.trainable = phase.trains == "all" or layer.name == HEAD
    if phase.freeze_bn:
        freeze_batch_norm(net)


def default_finetune(config) -> dict:
    """The fine-tuning fields a run with weights leaves open, and why (``"reason"``)."""
    epochs = config.epochs or FINETUNE_EPOCHS
    mode = config.finetune if config.finetune not in (None, "auto") else (
        "two-phase" if config.head_epochs else "full")  # full: the measured winner
    head_epochs = config.head_epochs
    if head_epochs is None:
        head_epochs = max(1, math.floor(HEAD_EPOCH_FRACTION * epochs)) if mode == "two-phase" else 0
    freeze_bn, bn_why = config.freeze_bn, "as asked"
    if freeze_bn is None:
        freeze_bn, bn_why = FREEZE_BN, "the default, measured ahead of frozen at batches 11 and 128"
    return dict(epochs=epochs, finetune=mode, head_epochs=head_epochs, freeze_bn=freeze_bn,
                reason=f"fine-tuning {config.weights} ({mode}"
                       + (f", BatchNorm {'frozen' if freeze_bn else 'adapting'}"
                          f"{' in phase 2' if mode == 'two-phase' else ''}: {bn_why}"  # full: one phase
                          if mode != "head" else "") + ")")


def run_eval_transform(augmentation: str, published: dict | None, image_size: int,
                       weights=None) -> tuple:
    """``(transform, why)``: the evaluation transform of a run's val / test (and of
    ``evaluate`` on its folder, and of its export), as a dict of
    :class:`keras_resnet.export.EvalTransform`'s fields, and where it came from.

    The rule: a set whose published transform crops (``resize > crop``: torchvision's
    ``Resize(232) + CenterCrop(224)``, timm's ``crop_pct``) gives its crop fraction
    ``crop / resize`` and its interpolation, with the shorter side resized; at another
    ``image_size`` than the set's crop the fraction and interpolation are kept, as timm
    keeps ``crop_pct`` at any input size. A set evaluated on the whole image
    (``resize == crop``: the CIFAR sets' 32 px images as they are), and a run without
    such a set (no weights, ``"imagenet"``, a file of no set), use the data pipeline's
    transform for the ``augmentation`` (:func:`keras_resnet.data.transforms.eval_kind`):
    the 0.875 center crop (bilinear) for "imagenet", else the whole image, so a folder of
    larger photos fine-tuned from a CIFAR set is still resized whole, not cropped.
    ``rounding`` is always in the dict (config.json), so :func:`recorded_eval_transform`
    can tell a run from before the field."""
    import dataclasses

    from keras_resnet.export.transform import EvalTransform

    if published and published["resize"] > published["crop"]:
        transform = EvalTransform(crop_fraction=published["crop"] / published["resize"],
                                  interpolation=published["interpolation"], resize="shorter_side")
        source = f"Resize({published['resize']}) + CenterCrop({published['crop']})"
        if image_size == published["crop"]:
            why = f"{weights}'s {source}"
        else:
            why = (f"{weights}'s crop fraction and interpolation ({source}) at {image_size} px, "
                   "as timm keeps crop_pct at any size")
        return dataclasses.asdict(transform), why
    from keras_resnet.data.transforms import eval_kind

    why = f"the data pipeline's for augmentation {augmentation}"
    if published:
        why += f" ({weights} evaluates the whole {published['crop']} px image)"
    return dataclasses.asdict(eval_kind(augmentation)), why


def recorded_eval_transform(config: dict):
    """The :class:`~keras_resnet.export.EvalTransform` a run folder's ``config.json``
    records (None if none): what ``evaluate`` and ``export --run`` apply. A run recorded
    before ``rounding`` existed evaluated with the pipeline's "nearest" rounding."""
    recorded = config.get("eval_transform")
    if not recorded:
        return None
    from keras_resnet.export.transform import EvalTransform

    return EvalTransform(**{"rounding": "nearest", **recorded})
