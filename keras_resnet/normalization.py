"""Batch normalization for keras_resnet models: Keras' layer with a fused kernel.

Keras 3's ``BatchNormalization`` is not fused and upcasts bfloat16 / float16 inputs to
float32, so under a mixed policy every BN of a ResNet costs two casts plus several separate
ops. On the TensorFlow backend this subclass runs TensorFlow's fused kernel
(``FusedBatchNormV3``) in the input's precision, with float32 scale, offset and statistics.
Variables, names and configuration are exactly Keras' own (gamma, beta, moving_mean,
moving_variance), so weight files and keras.applications parity are unaffected.

This is the one module of model code that touches ``tf.*``; it imports TensorFlow only
on the TensorFlow backend and falls back to Keras' implementation for everything the fused
kernel does not cover: other backends, inputs that are not 4-D, masks, batch
renormalization, float64, and ``synchronized=True`` training across several replicas (the
fused kernel computes per-replica statistics; Keras' layer all-reduces them).
"""

import keras

_FUSABLE_DTYPES = ("float32", "bfloat16", "float16")


@keras.saving.register_keras_serializable(package="keras_resnet")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` (same arguments, variables and results) that runs
    TensorFlow's fused kernel in the input's precision where it can."""

    def _fused_data_format(self, inputs, mask):
        """"NHWC" / "NCHW" when the fused kernel applies, else None."""
        if keras.backend.backend() != "tensorflow" or mask is not None or self.renorm:
            return None
        if len(inputs.shape) != 4 or keras.backend.standardize_dtype(inputs.dtype) not in _FUSABLE_DTYPES:
            return None
        axis = self.axis % 4
        return {3: "NHWC", 1: "NCHW"}.get(axis)

    def call(self, inputs, training=None, mask=None):
        data_format = self._fused_data_format(inputs, mask)
        train = bool(training) and self.trainable
        if data_format is None or (train and self.synchronized and _replicas() > 1):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[3 if data_format == "NHWC" else 1]
        scale = self.gamma.value if self.scale else tf.ones((channels,), "float32")
        offset = self.beta.value if self.center else tf.zeros((channels,), "float32")
        if train:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, epsilon=self.epsilon, data_format=data_format,
                is_training=True,
            )[:3]
            # The fused kernel returns the Bessel-corrected (n / (n - 1)) batch variance;
            # Keras keeps the biased one in moving_variance.
            variance = variance * _unbias_factor(inputs, channels)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, mean=self.moving_mean.value,
                variance=self.moving_variance.value, epsilon=self.epsilon,
                data_format=data_format, is_training=False,
            )[0]
        return tf.cast(y, self.compute_dtype)


def _unbias_factor(inputs, channels):
    """(n - 1) / n for n values per channel: static when the shape is known (no extra ops)."""
    import tensorflow as tf

    if all(d is not None for d in inputs.shape):
        n = 1
        for d in inputs.shape:
            n *= d
        n //= channels
        return (n - 1) / n if n > 1 else 0.0
    n = tf.cast(tf.size(inputs) // channels, "float32")
    return tf.math.divide_no_nan(n - 1.0, n)


def _replicas():
    """Replicas in sync in the current tf.distribute context (1 outside one)."""
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context
        return tf.distribute.get_strategy().num_replicas_in_sync
    return ctx.num_replicas_in_sync
