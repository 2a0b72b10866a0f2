"""Small parameter-free layers the blocks need (Keras-only, every backend)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_resnet")
class ZeroPadShortcut(keras.layers.Layer):
    """Option A identity shortcut (He et al. 2015, sec. 3.3): subsample spatially by
    ``strides`` and zero-pad the channels up to ``filters``. No parameters."""

    def __init__(self, filters, strides=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.data_format = data_format or keras.config.image_data_format()

    def call(self, x):
        s = self.strides
        last = self.data_format == "channels_last"
        if s > 1:
            x = x[:, ::s, ::s, :] if last else x[:, :, ::s, ::s]
        channels = x.shape[-1 if last else 1]
        extra = self.filters - channels
        if extra > 0:
            pad = [[0, 0], [0, 0], [0, 0], [0, extra]] if last else [[0, 0], [0, extra], [0, 0], [0, 0]]
            x = ops.pad(x, pad)
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        spatial = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for i in spatial:
            if shape[i] is not None:
                shape[i] = -(-shape[i] // self.strides)
        shape[3 if self.data_format == "channels_last" else 1] = self.filters
        return tuple(shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "data_format": self.data_format,
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
