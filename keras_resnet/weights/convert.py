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
"""

from __future__ import annotations

import re

import numpy as np

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


class Porter:
    """Collects ``(variable, value)`` pairs from a state dict, counting what was used."""

    def __init__(self, state: dict[str, np.ndarray], source: str = "checkpoint"):
        self.state = state
        self.source = source
        self.used: set[str] = set()
        self.assignments: list[tuple[object, np.ndarray]] = []

    def take(self, key: str, variable, hook=None) -> None:
        """Port tensor ``key`` (converted by ``hook``) into ``variable``, checking shapes."""
        target = tuple(variable.shape)
        if key not in self.state:
            raise ValueError(
                f"{self.source} has no tensor {key!r} for model variable {variable.path!r} "
                f"(shape {target})")
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
        """Mark every tensor under ``prefix`` as deliberately unused (the classifier)."""
        self.used.update(k for k in self.state if k.startswith(prefix + "."))

    def check_all_used(self) -> None:
        for key, value in self.state.items():
            if key not in self.used and not key.endswith(IGNORED_SUFFIXES):
                raise ValueError(
                    f"{self.source} tensor {key!r} (shape {tuple(np.shape(value))}) matches no "
                    "variable of the model: the checkpoint is of another architecture")

    def apply(self) -> None:
        for variable, value in self.assignments:
            variable.assign(value)


def _conv_hwio(x):
    return np.transpose(x, (2, 3, 1, 0))


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
    if isinstance(layer, keras.layers.Conv2D):
        return port_conv
    if isinstance(layer, keras.layers.Dense):
        return port_dense
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no converter")


# Other publishers' names for torchvision's, per file layout: (pattern, replacement) pairs
# applied in order to every tensor name (WeightSet.layout names the layout).
LAYOUTS = {
    "torchvision": (),  # torchvision, timm, chenyaofo/pytorch-cifar-models
    # akamaster/pytorch_resnet_cifar10 resnet.py: torchvision's names, classifier ``linear``
    "akamaster": ((r"^linear\.", "fc."),),
}


def detect_layout(state: dict) -> str:
    """The layout of a state dict's tensor names (a key of :data:`LAYOUTS`)."""
    if "linear.weight" in state and "fc.weight" not in state:
        return "akamaster"
    return "torchvision"


def to_torchvision_names(state: dict[str, np.ndarray], layout: str | None = None) -> dict:
    """``state`` with torchvision's tensor names; ``layout`` None: :func:`detect_layout`."""
    rules = LAYOUTS[layout or detect_layout(state)]
    if not rules:
        return state
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def classifier_outputs(state: dict[str, np.ndarray]) -> int | None:
    """How many classes the checkpoint's classifier has (None without one)."""
    w = state.get(f"{CLASSIFIER}.weight")
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
