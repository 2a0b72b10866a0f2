"""Inference-time graph rewrites (Keras only, every backend).

:func:`fold_batch_norm` folds each BatchNormalization that directly follows a Conv2D
into that convolution's kernel and bias. At inference BN is an affine map per channel,

    y = gamma * (conv(x) + b - moving_mean) / sqrt(moving_variance + epsilon) + beta,

so with ``s = gamma / sqrt(moving_variance + epsilon)`` the pair equals one convolution
with kernel ``W * s`` (scaled per output channel) and bias ``(b - moving_mean) * s + beta``.
The exported model then runs one op less per block and no BN at all.
"""

import keras
import numpy as np


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
