"""Small parameter-free layers the blocks need (Keras-only, every backend)."""

import keras
from keras import ops

from keras_resnet.specs import PAD_SIDES


@keras.saving.register_keras_serializable(package="keras_resnet")
class ZeroPadShortcut(keras.layers.Layer):
    """Option A identity shortcut (He et al. 2015, sec. 3.3): subsample the spatial axes by
    ``strides`` (an int for every axis, or one per axis) and zero-pad the channels up to
    ``filters``. No parameters; inputs of any rank (1D, 2D or 3D maps).

    ``pad_side``: where the new zero channels go. "end" (the default): after the input's
    channels. "both": half before and half after (the extra rounded down before), as
    akamaster/pytorch_resnet_cifar10's option A, ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0,
    planes // 4, planes // 4))``; its pretrained weights need it (:data:`PAD_SIDES`).
    """

    def __init__(self, filters, strides=1, data_format=None, pad_side="end", **kwargs):
        super().__init__(**kwargs)
        if pad_side not in PAD_SIDES:
            raise ValueError(f"pad_side must be one of {PAD_SIDES}. Received: pad_side={pad_side!r}")
        self.pad_side = pad_side
        self.filters = int(filters)
        self.strides = int(strides) if isinstance(strides, int) else tuple(int(s) for s in strides)
        self.data_format = data_format or keras.config.image_data_format()

    def _layout(self, rank):
        """(channel axis, spatial axes, stride per spatial axis) for inputs of ``rank``."""
        last = self.data_format == "channels_last"
        spatial = tuple(range(1, rank - 1)) if last else tuple(range(2, rank))
        strides = self.strides if isinstance(self.strides, tuple) else (self.strides,) * len(spatial)
        return (rank - 1 if last else 1), spatial, strides

    def call(self, x):
        channel_axis, spatial, strides = self._layout(len(x.shape))
        if any(s > 1 for s in strides):
            index = [slice(None)] * len(x.shape)
            for axis, s in zip(spatial, strides):
                index[axis] = slice(None, None, s)
            x = x[tuple(index)]
        extra = self.filters - x.shape[channel_axis]
        if extra > 0:
            pad = [[0, 0] for _ in x.shape]
            before = extra // 2 if self.pad_side == "both" else 0
            pad[channel_axis] = [before, extra - before]
            x = ops.pad(x, pad)
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        channel_axis, spatial, strides = self._layout(len(shape))
        for axis, s in zip(spatial, strides):
            if shape[axis] is not None:
                shape[axis] = -(-shape[axis] // s)
        shape[channel_axis] = self.filters
        return tuple(shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "data_format": self.data_format,
            "pad_side": self.pad_side,
        }


@keras.saving.register_keras_serializable(package="keras_resnet")
class StochasticDepth(keras.layers.Layer):
    """Drop a residual branch per sample while training (Huang et al. 2016, "Deep Networks
    with Stochastic Depth"); the kept branches are scaled by 1/(1 - rate). Identity at inference."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1). Received: rate={rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        mask = ops.floor(keep + noise)
        return x * mask / ops.cast(keep, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
