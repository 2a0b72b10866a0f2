"""Inference-time graph rewrites (Keras only, every backend).

:func:`fold_batch_norm` folds each BatchNormalization that directly follows a Conv2D
into that convolution's kernel and bias. At inference BN is an affine map per channel,

    y = gamma * (conv(x) + b - moving_mean) / sqrt(moving_variance + epsilon) + beta,

so with ``s = gamma / sqrt(moving_variance + epsilon)`` the pair equals one convolution
with kernel ``W * s`` (scaled per output channel) and bias ``(b - moving_mean) * s + beta``.
The exported model then runs one op less per block and no BN at all.

:func:`prepare_for_serving` is what an export serves: BN folded (nested functional
models included) and the model rebuilt under the serving precision (bf16 convolutions
with the classifier in float32, or float32 throughout).
"""

import warnings

import keras
import numpy as np

from keras_resnet.utils import (
    all_layers,
    compute_dtype,
    fail,
    keras_policy_name,
    normalize_precision,
    short_precision,
)


def _flat(tensors):
    return keras.tree.flatten(tensors)


def _foldable_pairs(model):
    """{bn layer name: conv layer} for every BN whose only input is a Conv2D output used by it alone."""
    consumers = {}
    for layer in model.layers:
        try:
            inputs = _flat(layer.input)
        except (AttributeError, ValueError):  # shared layer (several call sites): never fold
            continue
        for tensor in inputs:
            consumers.setdefault(id(tensor), []).append(layer)
    model_outputs = {id(t) for t in _flat(model.outputs)}
    by_output = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.Conv2DTranspose):
            try:
                by_output[id(layer.output)] = layer
            except (AttributeError, ValueError):
                continue

    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        try:
            bn_input = layer.input
        except (AttributeError, ValueError):
            continue
        conv = by_output.get(id(bn_input))
        if conv is None or id(bn_input) in model_outputs or len(consumers.get(id(bn_input), [])) != 1:
            continue
        if conv.activation is not keras.activations.linear:
            continue  # BN after a non-linearity is not an affine map of the conv
        channel_axis = 3 if conv.data_format == "channels_last" else 1
        if layer.axis % 4 != channel_axis:
            continue
        pairs[layer.name] = conv
    return pairs


def _folded_weights(conv, bn):
    """Kernel and bias of ``conv`` with ``bn``'s inference transform folded in (float64 math)."""
    kernel = np.asarray(conv.kernel.numpy(), dtype="float64")
    filters = kernel.shape[-1]
    bias = np.asarray(conv.bias.numpy(), dtype="float64") if conv.use_bias else np.zeros(filters)
    gamma = np.asarray(bn.gamma.numpy(), dtype="float64") if bn.scale else np.ones(filters)
    beta = np.asarray(bn.beta.numpy(), dtype="float64") if bn.center else np.zeros(filters)
    mean = np.asarray(bn.moving_mean.numpy(), dtype="float64")
    variance = np.asarray(bn.moving_variance.numpy(), dtype="float64")
    scale = gamma / np.sqrt(variance + bn.epsilon)
    dtype = conv.kernel.dtype
    return [(kernel * scale).astype(dtype), ((bias - mean) * scale + beta).astype(dtype)]


def fold_batch_norm(model):
    """Return an equivalent functional model with BN folded into the preceding Conv2D.

    Every ``BatchNormalization`` (Keras' or keras_resnet's) whose input is the output of
    a ``Conv2D`` with linear activation, used by nothing else, and normalised over that
    convolution's channel axis disappears; the convolution gains the folded kernel and a
    bias. Other layers are cloned with their weights. The result is for inference:
    outputs equal ``model(x, training=False)`` up to float rounding. The original model
    is not modified.
    """
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError(
                "model must be a built functional model (or a Sequential with an Input). "
                f"Received: model={model.name!r} (unbuilt Sequential)"
            )
        inputs, outputs = model.inputs, model.outputs
        model = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                            outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    if not isinstance(model, keras.Model) or not hasattr(model, "_operations"):
        raise ValueError(
            "model must be a functional keras.Model (subclassed models have no graph to rewrite). "
            f"Received: model={model!r}"
        )
    pairs = _foldable_pairs(model)
    folded_convs = {conv.name for conv in pairs.values()}
    skipped = set()

    def clone_layer(layer):
        if layer.name in pairs:
            skipped.add(id(layer))
            return layer  # never called: call_layer passes its input through
        config = layer.get_config()
        if layer.name in folded_convs:
            config.update(use_bias=True, bias_initializer="zeros", bias_regularizer=None, bias_constraint=None)
        return layer.__class__.from_config(config)

    def call_layer(layer, *args, **kwargs):
        if id(layer) in skipped:
            return args[0]
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone_layer, call_function=call_layer)
    bn_of_conv = {conv.name: model.get_layer(bn_name) for bn_name, conv in pairs.items()}
    for layer in model.layers:
        if layer.name in pairs or isinstance(layer, keras.layers.InputLayer):
            continue
        target = folded.get_layer(layer.name)
        if layer.name in bn_of_conv:
            target.set_weights(_folded_weights(layer, bn_of_conv[layer.name]))
        else:
            target.set_weights(layer.get_weights())
    return folded


# ------------------------------------------------------------ serving rewrites


def check_fold_bn(fold_bn):
    """``fold_bn`` as a bool, else ``ValueError`` naming it."""
    if not isinstance(fold_bn, (bool, np.bool_)):
        fail("fold_bn", fold_bn, "True or False")
    return bool(fold_bn)


def count_batch_norms(model):
    """BatchNormalization layers in ``model``, nested models included."""
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in all_layers(model))


def _is_graph_model(model):
    """True for models whose layer graph can be rebuilt: functional, or Sequential with an Input."""
    if isinstance(model, keras.Sequential):
        return bool(model.built and model.inputs)
    return hasattr(model, "_operations")  # functional (subclassed models have no graph)


def _clone_with_weights(model, clone_layer, **kwargs):
    """``keras.models.clone_model`` whose clones of ``clone_layer`` get the originals' weights."""
    pairs = []

    def clone(layer):
        new = clone_layer(layer)
        pairs.append((layer, new))
        return new

    cloned = keras.models.clone_model(model, clone_function=clone, **kwargs)
    for layer, new in pairs:
        if new is not layer and not isinstance(layer, keras.Model):
            new.set_weights(layer.get_weights())
    return cloned


def _fold_all(model):
    """:func:`fold_batch_norm` on the model and on the functional models nested in it (a
    backbone called as one layer, as in transfer learning)."""
    if any(isinstance(layer, keras.Model) and _is_graph_model(layer) for layer in model.layers):

        def clone_layer(layer):
            if isinstance(layer, keras.Model) and _is_graph_model(layer):
                return _fold_all(layer)
            return layer.__class__.from_config(layer.get_config())

        model = _clone_with_weights(model, clone_layer)
    return fold_batch_norm(model)


def _output_layers(model):
    """ids of the (innermost) layers whose outputs are the model's outputs."""
    found = set()
    for tensor in keras.tree.flatten(model.outputs):
        layer = tensor._keras_history.operation
        if isinstance(layer, keras.Model):
            found |= _output_layers(layer)
        else:
            found.add(id(layer))
    return found


def _with_compute_dtype(model, policy):
    """The same model and weights with every layer under the dtype policy ``policy``,
    except the layers producing the outputs (the classifier and its softmax): float32."""
    keep_float32 = _output_layers(model)

    def clone_layer(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = "float32" if id(layer) in keep_float32 else policy
        return layer.__class__.from_config(config)

    return _clone_with_weights(model, clone_layer, recursive=True)


def _needs_policy(model, policy, rebuildable):
    outputs = _output_layers(model) if rebuildable else set()
    return any(
        layer.dtype_policy.name != ("float32" if id(layer) in outputs else policy)
        for layer in all_layers(model)
        if not isinstance(layer, keras.layers.InputLayer)
    )


def prepare_for_serving(model, *, fold_bn=True, precision="fp32"):
    """The model a SavedModel serves, and what was done to it (for the export metadata).

    Args:
        model: a classifier ``keras.Model``; it is not modified.
        fold_bn: fold every BatchNormalization that follows a convolution into it
            (:func:`fold_batch_norm`, nested functional models included). BN that follows
            no convolution (the pre-activation BN of v2 models) stays. A subclassed model
            has no layer graph to rewrite: it is served unfolded, with a warning.
        precision: ``"fp32"`` or ``"bf16"`` (``"mixed_bfloat16"`` too). ``"fp32"`` computes
            every layer in float32, also for a model trained under a mixed policy;
            ``"bf16"`` rebuilds the model under the ``mixed_bfloat16`` policy (bf16
            convolutions and matmuls, float32 variables) with the layers producing the
            outputs kept in float32.

    Returns ``(served_model, facts)`` with ``facts`` a dict: ``precision``,
    ``compute_dtype``, ``batch_norm_folded`` and ``batch_norm_kept`` (layer counts).
    """
    fold_bn = check_fold_bn(fold_bn)
    canonical = normalize_precision(precision, allowed=("fp32", "mixed_bfloat16"))
    policy = keras_policy_name(canonical)
    before = count_batch_norms(model)
    rebuildable = _is_graph_model(model)
    if fold_bn and before:
        if rebuildable:
            model = _fold_all(model)
        else:
            warnings.warn(
                f"model {model.name!r} is not a functional or Sequential model, so its "
                "BatchNormalization layers are exported unfolded.",
                stacklevel=3,
            )
    if _needs_policy(model, policy, rebuildable):
        if not rebuildable:
            fail("precision", precision, "the model's own dtype policy for a subclassed "
                 "model (it cannot be rebuilt under another)")
        model = _with_compute_dtype(model, policy)
    kept = count_batch_norms(model)
    return model, {
        "precision": short_precision(canonical),
        "compute_dtype": compute_dtype(canonical),
        "batch_norm_folded": before - kept,
        "batch_norm_kept": kept,
    }
