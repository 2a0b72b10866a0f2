"""What ``weights=`` means for an ImageNet-family model, checked before the model is built,
and how it is loaded afterwards.

- ``None``; ``"imagenet"`` (keras.applications' files);
- a Keras file (``.h5`` / ``.weights.h5`` / ``.keras``);
- a checkpoint of the matching architecture, recognised by content under any name
  (:mod:`keras_resnet.weights.checkpoint`): ``torch.save`` in the zip or legacy layout
  (``.pth``, ``.pt``, ``.th``, ``.pth.tar``, ``.bin``, ``.ckpt``), ``.safetensors``, or a
  zip of one of them (``.pth.zip``); the state dict may sit in a container
  (``{"state_dict": ..., "epoch": ...}``) and its names may share a prefix
  (``module.``), both reported by :func:`load_checkpoint`;
- a keras-hub ``ResNetBackbone`` preset folder of the matching architecture
  (:mod:`keras_resnet.weights.keras_hub`; backbone only, ``include_top=False``);
- a named published set: ``"torchvision"`` (the best torchvision set for the model),
  ``"torchvision:IMAGENET1K_V1"`` / ``"...V2"``, ``"timm:<tag>"``
  (:mod:`keras_resnet.weights.published`), downloaded once into Keras' cache folder.

A published file is recognised by its content wherever it lies and whatever it is called
now (the sha256 or, for osmr's, SHA-1 prefix of its published name,
:func:`keras_resnet.weights.published.set_of_file`): it loads as its set. A published file
name (``"resnet20-12fca82f.th"``) is looked up in Keras' cache folder first.

CIFAR models (:func:`plan_cifar`) take the CIFAR sets (``"akamaster"``,
``"chenyaofo:cifar10"`` ...): the set decides the builder options the publisher's
architecture needs (option A or B, the side the zero channels go, BN epsilon) and the
classes; options passed that contradict it are a ``ValueError``.

A model loaded from a published set carries it as the public attribute
``model.weight_set`` (a :class:`~keras_resnet.weights.published.WeightSet`: name, URL,
license, published top-1, eval transform; timm's ``model.pretrained_cfg``), read by
:func:`weight_set_of` and :func:`transform_of`; it is not saved with the model.
"""

from __future__ import annotations

import dataclasses
import os

from keras_resnet.weights import applications, checkpoint, convert, download, keras_hub, published, tf2cv

_STRUCTURAL = applications._STRUCTURAL


@dataclasses.dataclass
class Plan:
    """A checked ``weights=`` argument: what to load once the model exists."""

    kind: str  # "imagenet", "keras", "checkpoint", "keras_hub", "set"
    path: str | None = None
    weight_set: published.WeightSet | None = None
    depth: int | None = None
    variant: str | None = None
    state: dict | None = None  # a keras-hub preset read while checking it, loaded once built
    opened: checkpoint.Checkpoint | None = None  # a checkpoint read while checking it
    options: dict = dataclasses.field(default_factory=dict)  # CIFAR: the builder options
    classes: int | None = None  # CIFAR: the classes the model gets


def named_model_for(depth: int, variant: str, options: dict) -> str | None:
    """Our named ImageNet model with this depth, variant and structural options, if any."""
    from keras_resnet import specs

    given = {k: v for k, v in options.items() if k in _STRUCTURAL}
    for spec in specs.MODELS.values():
        if (spec.family, spec.variant, spec.depth) == ("imagenet", variant, depth) \
                and given == dict(spec.options):
            return spec.name
    return None


def _check_classes(outputs, include_top, classes, received):
    if include_top and outputs is not None and classes != outputs:
        raise ValueError(
            f"classes must be {outputs} (the checkpoint's classifier) with include_top=True. "
            f"Received: classes={classes}, weights={received!r}. For a new head, build with "
            "include_top=False and add one, or build the model and call "
            "keras_resnet.weights.load_checkpoint(model, path, skip_classifier=True)")


def _published_instead(depth, variant, options) -> str:
    """Where weights='imagenet' does not exist: the named sets this model has, if any."""
    name = named_model_for(depth, variant, options)
    sets = published.sets_for(name) if name else []
    if not sets:
        return ""
    sources = sorted({s.source for s in sets})
    return (f"; {name} has published weights: " + " or ".join(f"weights={s!r}" for s in sources)
            + " (`keras-resnet list --weights`)")


def plan(weights, *, depth: int, variant: str, options: dict, include_top: bool,
         classes: int) -> Plan | None:
    """Validate ``weights`` for ``ResNet(depth, variant=..., **options)`` before building;
    ``ValueError`` naming the argument and value when it cannot load."""
    if weights is None:
        return None
    if weights == "imagenet":
        applications.check_imagenet(depth, variant, options, instead=_published_instead(depth, variant, options))
        return Plan("imagenet", depth=depth, variant=variant)
    if published.is_set_name(weights):
        name = named_model_for(depth, variant, options)
        if name is None:
            raise ValueError(
                f"weights={weights!r} needs one of the named models of 'keras-resnet list "
                f"--weights'; depth={depth}, variant={variant!r} with these options is none. "
                f"Received: weights={weights!r}")
        ws = published.find_set(name, weights)
        _check_classes(1000, include_top, classes, weights)
        return Plan("set", weight_set=ws)
    ws, path = resolve_file(weights)
    if ws is not None:
        if ws.model == named_model_for(depth, variant, options):
            _check_classes(ws.classes, include_top, classes, weights)
            return Plan("set", weight_set=ws, path=path)
        if path is None:  # a published file name that is no local file
            raise ValueError(
                f"weights={weights!r} is the file of {ws.name} for {ws.model}, not of "
                f"depth={depth}, variant={variant!r} with these options. Received: weights={weights!r}")
    if isinstance(weights, (str, os.PathLike)) and checkpoint.is_checkpoint(weights):
        path = os.fspath(weights)
        opened = checkpoint.open_checkpoint(path)
        _check_classes(convert.classifier_outputs(opened.state), include_top, classes, weights)
        return Plan("checkpoint", path=path, opened=opened)
    if isinstance(weights, (str, os.PathLike)) and keras_hub.is_preset(weights):
        return _plan_keras_hub(os.fspath(weights), depth, variant, options, include_top)
    path = applications.check_weights_argument(weights)
    return Plan("keras", path=path)


def resolve_file(weights) -> tuple[published.WeightSet | None, str | None]:
    """``(set, local path)`` for a ``weights`` that is a published set's file: an existing
    file whose hash is a set's (any name), or a set's published file name that is no local
    file (then the cache, see :func:`fetch_set`, path None). ``(None, None)`` otherwise."""
    if not isinstance(weights, (str, os.PathLike)):
        return None, None
    path = os.fspath(weights)
    if os.path.isfile(path):
        return published.set_of_file(path), path
    return published.set_of_file_name(path), None


def cifar_model_name(depth: int, variant: str) -> str | None:
    """Our named CIFAR model of this depth and variant ("ResNet20", "ResNet164V2"), if any."""
    from keras_resnet import specs

    return next((spec.name for spec in specs.MODELS.values() if (spec.family, spec.variant,
                 spec.depth) == ("cifar", variant, depth)), None)


def plan_cifar(weights, *, depth: int, variant: str, options: dict, include_top: bool,
               classes: int | None) -> Plan:
    """Validate ``weights`` for ``CifarResNet(depth, variant=..., **options)`` before
    building. A published set (by name, file name or content) fills in the builder options
    its publisher's architecture needs and its classes; an option or ``classes`` that
    contradicts the set is a ``ValueError``. The returned plan's ``options`` and
    ``classes`` are what to build with (``classes`` None: 10)."""
    p = None
    if weights is not None and published.is_set_name(weights):
        name = cifar_model_name(depth, variant)
        if name is None:
            raise ValueError(
                f"weights={weights!r} needs one of the named models of 'keras-resnet list "
                f"--weights'; depth={depth}, variant={variant!r} is none. Received: weights={weights!r}")
        p = Plan("set", weight_set=published.find_set(name, weights))
    else:
        ws, path = resolve_file(weights)
        if ws is not None:
            name = cifar_model_name(depth, variant)
            if ws.model != name:
                raise ValueError(
                    f"weights={weights!r} is the file of {ws.name} for {ws.model}; the model is "
                    f"{name or f'depth={depth}, variant={variant!r}'}. Received: weights={weights!r}")
            p = Plan("set", weight_set=ws, path=path)
    if p is None:  # no published set: a checkpoint, osmr tf2cv or Keras file, as ResNet's
        if isinstance(weights, (str, os.PathLike)) and tf2cv.is_tf2cv(weights):
            opened = open_weights(os.fspath(weights))
            _check_classes(convert.classifier_outputs(opened.state), include_top, classes or 10,
                           weights)
            p = Plan("checkpoint", path=os.fspath(weights), opened=opened)
        else:
            p = plan(weights, depth=depth, variant=variant, options=options,
                     include_top=include_top, classes=classes or 10)
        return dataclasses.replace(p or Plan("none"), options=dict(options), classes=classes)
    ws = p.weight_set
    merged = dict(options)
    for key, value in ws.options:
        if key in options and options[key] != value:
            raise ValueError(
                f"{key}={options[key]!r} contradicts weights={weights!r}: {ws.name} ({ws.model}) "
                f"needs {key}={value!r}; leave {key} out. Received: {key}={options[key]!r}")
        merged[key] = value
    if classes is not None:
        _check_classes(ws.classes, include_top, classes, weights)
    p.options, p.classes = merged, ws.classes
    return p


def _plan_keras_hub(path, depth, variant, options, include_top):
    config, state = keras_hub.read_preset(path)
    preset_model = keras_hub.model_for(config)
    ours = named_model_for(depth, variant, options)
    if ours != preset_model:
        raise ValueError(
            f"weights is a keras-hub preset of {preset_model}, but the model is "
            f"{ours or f'depth={depth}, variant={variant!r}'}. Received: weights={path!r}")
    if include_top:
        raise ValueError("include_top must be False with a keras-hub backbone preset (it has no "
                         f"classifier). Received: include_top=True, weights={path!r}")
    return Plan("keras_hub", path=path, state=state)


def open_weights(path: str) -> checkpoint.Checkpoint:
    """A torch / safetensors checkpoint (:func:`~keras_resnet.weights.checkpoint.open_checkpoint`)
    or an osmr tf2cv file (:mod:`~keras_resnet.weights.tf2cv`, read into pytorchcv's names)."""
    if tf2cv.is_tf2cv(path):
        return checkpoint.Checkpoint(tf2cv.read_state(path), "tf2cv hdf5")
    return checkpoint.open_checkpoint(path)


def load_checkpoint(model, path: str, *, skip_classifier: bool = False, state=None,
                    layout: str | None = None) -> dict:
    """Load a torchvision / timm / CIFAR publisher's checkpoint into ``model`` (built with the
    same architecture).

    ``skip_classifier=True`` loads everything but the checkpoint's ``fc`` and leaves the
    model's ``predictions`` layer as initialised: the option for fine-tuning with a head of
    another size. ``layout``: how it names its tensors
    (:data:`~keras_resnet.weights.convert.LAYOUTS`; None: detected from the names).
    ``state``: the checkpoint already read, a
    :class:`~keras_resnet.weights.checkpoint.Checkpoint` or a state dict (else it is read
    from ``path``). Returns the load report: ``{"tensors": matched source tensors,
    "variables": model variables set, "ignored": bookkeeping / classifier tensors left out,
    "prefix": the prefix stripped from every name ("" for none), "container": the key the
    state dict sat under (None at the top), "ignored_entries": the entries beside it
    (epoch, optimizer, ...)}``.
    """
    if state is None:
        state = open_weights(path)
    if not isinstance(state, checkpoint.Checkpoint):
        state = checkpoint.Checkpoint(state, "state dict")
    porter = convert.port_torch_state(model, state.state,
                                      source=f"checkpoint {os.path.basename(path)}",
                                      skip_classifier=skip_classifier, layout=layout)
    porter.apply()
    return {"tensors": len(porter.assignments), "variables": len(porter.assignments),
            "ignored": len(state.state) - len(porter.assignments), "prefix": porter.prefix or "",
            "container": state.container, "ignored_entries": list(state.ignored_entries)}


def fetch_set(ws: published.WeightSet) -> str:
    """The cached file of a published set (``$KERAS_HOME/models/<published file name>``,
    used offline when its hash checks), downloaded (hash-checked) when missing."""
    return download.fetch(ws.file_name, ws.url, ws.hash_prefix, algorithm=ws.hash_algorithm,
                          unzip=ws.zipped)




def apply(p: Plan | None, model) -> None:
    """Load what :func:`plan` / :func:`plan_cifar` checked into the built ``model``."""
    if p is None or p.kind == "none":
        return
    if p.kind == "imagenet":
        include_top = any(layer.name == "predictions" for layer in model.layers)
        applications.load_imagenet(model, depth=p.depth, variant=p.variant, include_top=include_top)
    elif p.kind == "keras":
        applications.load_weights(model, p.path)
    elif p.kind == "keras_hub":
        keras_hub.port_preset(model, p.state, f"keras-hub preset {p.path}").apply()
        p.state = None
    elif p.kind == "checkpoint":
        load_checkpoint(model, p.path, state=p.opened)
        p.opened = None
    else:
        ws = p.weight_set
        path = p.path or fetch_set(ws)
        load_checkpoint(model, path, layout=ws.layout)
        model.weight_set = ws


def weight_set_of(model) -> published.WeightSet | None:
    """The published set ``model`` was loaded from: its public ``model.weight_set``
    (None for any other weights)."""
    ws = getattr(model, "weight_set", None)
    return ws if isinstance(ws, published.WeightSet) else None


def transform_of(model) -> published.PublishedTransform | None:
    """The eval transform of the set ``model`` was loaded from (None if none)."""
    ws = weight_set_of(model)
    return None if ws is None else ws.transform


def serving_transform(model) -> "EvalTransform | None":
    """The export :class:`~keras_resnet.export.EvalTransform` of the set ``model`` was loaded
    from (shorter side to ``crop / crop_fraction``, center crop, the publisher's
    interpolation), or None."""
    t = transform_of(model)
    if t is None:
        return None
    from keras_resnet.export.transform import EvalTransform

    return EvalTransform(crop_fraction=t.crop / t.resize, interpolation=t.interpolation,
                         resize="shorter_side")
