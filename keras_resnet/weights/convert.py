"""Port a torchvision / timm state dict into a keras_resnet model, tensor by tensor.

The model drives the mapping: each layer that holds weights names the source tensors it
takes (:func:`torch_prefix`), and one small ``port_*`` function per layer kind converts them
(keras-hub's ``port_weight`` style):

- conv: OIHW -> HWIO (``(2, 3, 1, 0)``); a grouped conv's ``I`` is already in/groups in both;
- batch norm: ``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance``; ``num_batches_tracked`` is bookkeeping and ignored;
- classifier: ``fc.weight`` (out, in) -> ``predictions`` kernel (in, out);
- squeeze-and-excitation (timm ``se.fc1`` / ``se.fc2``, 1x1 convs with bias);
- the v1d shortcut (timm ``downsample.0`` is the average pool, so its conv and BN are
  ``downsample.1`` / ``downsample.2``).

Every source tensor is used exactly once and every model variable is set; otherwise a
``ValueError`` names the first unmatched tensor or variable and both shapes. Nothing is
assigned to the model until everything has matched.

A prefix that every name of the checkpoint shares (``module.`` from ``DataParallel``,
``_orig_mod.`` from ``torch.compile``, ``model.``, ``backbone.``, nested ones like
``module.backbone.``) is stripped when what remains matches the names the model expects
(:class:`Porter` decides on the first name it is asked for). When no name matches with or
without such a prefix, the error names the prefix the file uses and a few names the model
expects.
"""

from __future__ import annotations

import re

import numpy as np

# our named model -> (library, constructor) of the module its checkpoints come from
REFERENCE_MODULES = {
    **{f"ResNet{d}V1_5": ("torchvision", f"resnet{d}") for d in (18, 34, 50, 101, 152)},
    "ResNet26V1_5": ("timm", "resnet26"), "ResNet200V1_5": ("timm", "resnet200"),
    **{f"ResNet{d}D": ("timm", f"resnet{d}d") for d in (18, 26, 34, 50, 101, 152, 200)},
    "ResNeXt50_32x4d": ("torchvision", "resnext50_32x4d"),
    "ResNeXt101_32x8d": ("torchvision", "resnext101_32x8d"),
    "WideResNet50_2": ("torchvision", "wide_resnet50_2"),
    "SEResNet50": ("timm", "seresnet50"),
}
IGNORED_SUFFIXES = ("num_batches_tracked",)
CLASSIFIER = "fc"

_DEEP_STEM = {"1": ("conv1.0", "conv1.1"), "2": ("conv1.3", "conv1.4"), "3": ("conv1.6", "bn1")}


def torch_prefix(layer_name: str, *, avg_down: bool) -> str:
    """The torchvision / timm module path of one of our layers (``conv3_block2_1_conv`` ->
    ``layer2.1.conv1``); ``ValueError`` for a layer torch ResNets do not have."""
    if layer_name == "predictions":
        return CLASSIFIER
    m = re.fullmatch(r"conv1_(conv|bn)", layer_name)
    if m:
        return "conv1" if m.group(1) == "conv" else "bn1"
    m = re.fullmatch(r"conv1_([123])_(conv|bn)", layer_name)
    if m:
        conv, bn = _DEEP_STEM[m.group(1)]
        return conv if m.group(2) == "conv" else bn
    m = re.fullmatch(r"conv(\d+)_block(\d+)_(.+)", layer_name)
    if m:
        block = f"layer{int(m.group(1)) - 1}.{int(m.group(2)) - 1}"
        part = m.group(3)
        first = 1 if avg_down else 0
        parts = {"0_conv": f"downsample.{first}", "0_bn": f"downsample.{first + 1}",
                 "se_reduce": "se.fc1", "se_expand": "se.fc2"}
        if part in parts:
            return f"{block}.{parts[part]}"
        k = re.fullmatch(r"([123])_(conv|bn)", part)
        if k:
            return f"{block}.{k.group(2)}{k.group(1)}"
    raise ValueError(
        f"layer {layer_name!r} has no counterpart in a torchvision / timm ResNet (the model "
        "must be a v1.5 / v1d variant: no conv biases, no pre-activation)")


def shared_prefixes(names) -> list[str]:
    """The dotted prefixes every name starts with, shortest first, ``""`` included:
    ``["", "module.", "module.backbone."]`` for ``module.backbone.conv1.weight``, ...
    (never a whole name)."""
    names = list(names)
    if not names:
        return [""]
    parts = min(names, key=len).split(".")[:-1]
    out = [""]
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i]) + "."
        if not all(n.startswith(prefix) and len(n) > len(prefix) for n in names):
            break
        out.append(prefix)
    return out


_UNMATCHED_EXAMPLES = 4


class Porter:
    """Collects ``(variable, value)`` pairs from a state dict, counting what was used.

    ``prefix``: the shared prefix of the checkpoint's names that was stripped (``""`` for
    none), decided by the first :meth:`take`: the shortest of :func:`shared_prefixes` under
    which that name exists."""

    def __init__(self, state: dict[str, np.ndarray], source: str = "checkpoint"):
        self.state = state
        self.source = source
        self.used: set[str] = set()
        self.assignments: list[tuple[object, np.ndarray]] = []
        self.prefix: str | None = None
        self._skipped: list[str] = []
        self._unmatched: list[tuple[str, object]] = []  # while no name has matched
        self._later_match = False  # a name after the first one matched
        self._prefixes = shared_prefixes(state)

    def _key(self, key: str) -> str | None:
        if self.prefix is None and not self._unmatched:
            self.prefix = next((p for p in self._prefixes if p + key in self.state), None)
        return None if self.prefix is None else self.prefix + key

    def take(self, key: str, variable, hook=None) -> None:
        """Port tensor ``key`` (converted by ``hook``) into ``variable``, checking shapes."""
        target = tuple(variable.shape)
        found = self._key(key)
        if found is None:  # nothing matched yet: collect examples for one clear error
            self._unmatched.append((key, variable))
            self._later_match = self._later_match or any(
                p + key in self.state for p in self._prefixes)
            return
        if found not in self.state:
            raise ValueError(
                f"{self.source} has no tensor {found!r} for model variable {variable.path!r} "
                f"(shape {target})")
        key = found
        if key in self.used:
            raise ValueError(f"{self.source} tensor {key!r} would be used twice")
        value = np.asarray(self.state[key])
        converted = hook(value) if hook is not None else value
        if tuple(converted.shape) != target:
            raise ValueError(
                f"{self.source} tensor {key!r} has shape {tuple(value.shape)}, model variable "
                f"{variable.path!r} needs {target}")
        self.used.add(key)
        self.assignments.append((variable, converted.astype(np.float32)))

    def skip(self, prefix: str) -> None:
        """Mark every tensor under ``prefix`` (after the shared prefix) as deliberately
        unused (the classifier)."""
        self._skipped.append(prefix + ".")

    def _no_match_error(self) -> ValueError:
        key, variable = self._unmatched[0]
        missing = (f"{self.source} has no tensor {key!r} for model variable {variable.path!r} "
                   f"(shape {tuple(variable.shape)})")
        if self._later_match:  # the first layer differs: another architecture
            return ValueError(missing)
        names = list(self.state)
        shared = self._prefixes[-1]
        if shared:
            held = f"every name starts with {shared!r} (e.g. {names[0]!r})"
        else:
            held = f"its names look like {names[:3]}"
        expected = [k for k, _ in self._unmatched[:_UNMATCHED_EXAMPLES]]
        return ValueError(
            f"{missing}, with or without a prefix: {held}, while the "
            f"model expects names like {expected}. The checkpoint is of another architecture "
            "or its names need another prefix")

    def check_all_used(self) -> None:
        if self._unmatched:
            raise self._no_match_error()
        prefix = self.prefix or ""
        for key in self.state:
            if key.startswith(prefix) and key[len(prefix):].startswith(tuple(self._skipped)):
                self.used.add(key)
        for key, value in self.state.items():
            if key not in self.used and not key.endswith(IGNORED_SUFFIXES):
                raise ValueError(
                    f"{self.source} tensor {key!r} (shape {tuple(np.shape(value))}) matches no "
                    "variable of the model: the checkpoint is of another architecture")

    def apply(self) -> None:
        for variable, value in self.assignments:
            variable.assign(value)


def _conv_hwio(x):
    """(out, in, *spatial) -> (*spatial, in, out): OIHW -> HWIO, and the same in 1D / 3D."""
    return np.transpose(x, tuple(range(2, x.ndim)) + (1, 0))


def port_conv(p: Porter, layer, prefix: str) -> None:
    p.take(f"{prefix}.weight", layer.kernel, _conv_hwio)
    if layer.use_bias:
        p.take(f"{prefix}.bias", layer.bias)


def port_batch_norm(p: Porter, layer, prefix: str) -> None:
    p.take(f"{prefix}.weight", layer.gamma)
    p.take(f"{prefix}.bias", layer.beta)
    p.take(f"{prefix}.running_mean", layer.moving_mean)
    p.take(f"{prefix}.running_var", layer.moving_variance)


def port_dense(p: Porter, layer, prefix: str) -> None:
    p.take(f"{prefix}.weight", layer.kernel, np.transpose)
    p.take(f"{prefix}.bias", layer.bias)


def _porter_for(layer):
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return port_batch_norm
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        return port_conv
    if isinstance(layer, keras.layers.Dense):
        return port_dense
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no converter")


def classifier_outputs(state: dict[str, np.ndarray]) -> int | None:
    """How many classes the checkpoint's classifier has (None without one), under any
    prefix shared by every name."""
    w = next((state[p + f"{CLASSIFIER}.weight"] for p in shared_prefixes(state)
              if p + f"{CLASSIFIER}.weight" in state), None)
    return None if w is None else int(w.shape[0])


def port_torch_state(model, state: dict[str, np.ndarray], *, source: str = "checkpoint",
                     skip_classifier: bool = False) -> Porter:
    """Match a torchvision / timm ``state`` to ``model`` and return the checked
    :class:`Porter` (call ``.apply()`` to assign). A model without top, or
    ``skip_classifier=True``, leaves the checkpoint's ``fc`` out (fine-tuning a new head)."""
    import keras

    from keras_resnet.utils import all_layers

    layers = [layer for layer in all_layers(model) if layer.weights]
    # ResNet-D's shortcut starts with an average pool: timm then numbers its conv and BN 1, 2
    avg_down = any(isinstance(layer, keras.layers.AveragePooling2D)
                   and re.fullmatch(r"conv\d+_block\d+_0_pool", layer.name)
                   for layer in all_layers(model))
    p = Porter(state, source)
    has_top = any(layer.name == "predictions" for layer in layers)
    if not has_top or skip_classifier:
        p.skip(CLASSIFIER)
    for layer in layers:
        if layer.name == "predictions" and skip_classifier:
            continue
        _porter_for(layer)(p, layer, torch_prefix(layer.name, avg_down=avg_down))
    p.check_all_used()
    return p
