"""Batch normalization for keras_resnet models: Keras' layer with a fused TensorFlow kernel.

Keras 3's ``keras.layers.BatchNormalization`` computes the moments and the
normalisation as separate ops and upcasts bfloat16/float16 inputs to float32, so
every BN of a ResNet costs two casts and several element-wise passes. On the
TensorFlow backend this subclass runs the whole layer as one ``FusedBatchNormV3``
op in the input's precision (statistics, scale and offset stay float32), which
Grappler/oneDNN can also fuse with the preceding convolution at inference.

It keeps exactly Keras' constructor, config, variables and variable names
(``gamma``, ``beta``, ``moving_mean``, ``moving_variance``), so weight files and
``keras.applications`` parity are unaffected, and it updates the moving
statistics exactly as Keras does, except that under a strategy of several replicas
every replica holds their mean (see ``add_weight``). Whatever the fused kernel cannot reproduce
falls back to Keras' own ``call``: other backends, inputs that are not 4-D or
not normalised over the channel axis, masks, batch renormalization, float64 or
non-float32 variables, a symbolic ``training`` flag, and ``synchronized=True``
while training under a strategy with more than one replica (the fused kernel
computes per-replica moments; synchronized BN needs an all-reduce of the sums
between the moments and the normalisation, with gradients flowing through that
all-reduce, which only the unfused formulation gives).

This is the one module of model code that touches ``tf.*``; TensorFlow is
imported only inside ``call`` on the TensorFlow backend, so the module imports
and works on every Keras backend.
"""

import math

import keras

# Input dtypes FusedBatchNormV3 accepts with float32 statistics.
_FUSED_DTYPES = ("float32", "bfloat16", "float16")
# cuDNN refuses smaller epsilons (tf.compat.v1.nn.fused_batch_norm silently raises them
# to this); TensorFlow's CPU kernel takes any, so the raw op is called with Keras' value.
_CUDNN_MIN_EPSILON = 1.001e-5


def _tensorflow():
    import tensorflow as tf

    return tf


@keras.saving.register_keras_serializable(package="keras_resnet")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' ``BatchNormalization`` (same arguments, variables and weight layout), fused on TensorFlow.

    On the TensorFlow backend, 4-D inputs normalised over their channel axis
    (``axis=-1`` for channels_last, ``axis=1`` for channels_first) run through
    one fused kernel in the input's precision: bfloat16 activations stay
    bfloat16 under the ``mixed_bfloat16`` policy instead of being upcast.
    Training mode normalises with the batch moments and moves
    ``moving_mean`` / ``moving_variance`` by ``momentum`` towards the batch mean
    and the (biased) batch variance, as Keras does; inference mode uses the
    moving statistics. Every other case runs Keras' own implementation.
    See ``keras.layers.BatchNormalization`` for the other arguments.

    Args:
        frozen: a frozen layer always normalises with its moving statistics and never
            changes its variables (broadinstitute keras-resnet's ``freeze_bn``, for
            detection and segmentation fine-tuning with small batches). Unlike
            ``trainable=False`` it survives ``model.trainable = True``: setting
            ``trainable`` on a frozen layer leaves it non-trainable (see
            :func:`freeze_batch_norm` for why ``training=False`` is not enough in Keras 3).
            Set ``layer.frozen = False`` and then ``layer.trainable = True`` to thaw it.
    """

    def __init__(self, *args, frozen=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.frozen = frozen

    @property
    def frozen(self):
        return getattr(self, "_frozen", False)

    @frozen.setter
    def frozen(self, value):
        if not isinstance(value, bool):
            raise ValueError(f"frozen must be a bool. Received: frozen={value!r}")
        self._frozen = value
        if value:
            self.trainable = False

    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        # A frozen layer stays non-trainable when a model above it is made trainable.
        keras.layers.Layer.trainable.fset(self, bool(value) and not self.frozen)

    def add_weight(self, *args, **kwargs):
        # The moving statistics are updated inside each replica's step. Keras creates them
        # with aggregation "none": under a tf.distribute strategy every replica (and every
        # worker) then keeps the statistics of its own shard, the replicas drift apart, and
        # a saved model holds the first replica's alone. With "mean" each update is averaged
        # over the replicas and written to all of them, as tf.keras 2 averaged them (on
        # read); with synchronized BN the updates are equal already. No effect on one
        # device or other backends. Pinned by tests/test_finetune.py (replicas identical).
        if kwargs.get("name") in ("moving_mean", "moving_variance"):
            kwargs.setdefault("aggregation", "mean")
        return super().add_weight(*args, **kwargs)

    def get_config(self):
        # An unfrozen layer's config holds only keras.layers.BatchNormalization's keys. A
        # file still names the class "keras_resnet>BatchNormalization", so loading it needs
        # keras_resnet imported (keras_resnet.saving registers the class).
        config = super().get_config()
        if self.frozen:
            config["frozen"] = True
        return config

    def call(self, inputs, training=None, mask=None):
        if self.frozen:
            training = False
        data_format = self._fused_data_format(inputs, training, mask)
        if data_format is None:
            return super().call(inputs, training=training, mask=mask)
        return self._fused_call(inputs, bool(training and self.trainable), data_format)

    def _fused_data_format(self, inputs, training, mask):
        """``"NHWC"`` / ``"NCHW"`` when the fused kernel reproduces Keras' result, else None."""
        if keras.backend.backend() != "tensorflow":
            return None
        if mask is not None or self.renorm:
            return None
        if training is not None and not isinstance(training, bool):
            return None  # a symbolic training flag: leave it to Keras
        if len(inputs.shape) != 4 or inputs.shape[self.axis] is None:
            return None
        if keras.backend.standardize_dtype(inputs.dtype) not in _FUSED_DTYPES:
            return None
        if keras.backend.standardize_dtype(self.moving_mean.dtype) != "float32":
            return None
        tf = _tensorflow()
        if self.synchronized and training and self.trainable and _replicas() > 1:
            return None
        if self.epsilon < _CUDNN_MIN_EPSILON and tf.config.list_physical_devices("GPU"):
            return None
        return {3: "NHWC", 1: "NCHW"}.get(self.axis % 4)

    def _fused_call(self, inputs, training, data_format):
        tf = _tensorflow()
        channels = inputs.shape[self.axis]
        scale = self.gamma.value if self.scale else tf.ones([channels], "float32")
        offset = self.beta.value if self.center else tf.zeros([channels], "float32")
        if not training:
            outputs = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=scale,
                offset=offset,
                mean=self.moving_mean.value,
                variance=self.moving_variance.value,
                epsilon=self.epsilon,
                data_format=data_format,
                is_training=False,
            )[0]
            return keras.ops.cast(outputs, self.compute_dtype)

        empty = tf.constant([], "float32")
        outputs, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=scale,
            offset=offset,
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            data_format=data_format,
            is_training=True,
        )[:3]
        # The kernel normalises with the biased variance but returns the
        # Bessel-corrected one, n / (n - 1) times larger (n = values per channel;
        # no correction when n == 1). Keras averages the biased variance.
        variance = variance * _unbias_factor(inputs, self.axis % 4)
        mean = tf.stop_gradient(mean)
        variance = tf.stop_gradient(variance)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean.value * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance.value * m + variance * (1.0 - m))
        return keras.ops.cast(outputs, self.compute_dtype)


def _unbias_factor(inputs, axis):
    """(n - 1) / n for n values per channel (1 when n == 1); a Python float when the shape is static."""
    other = [d for i, d in enumerate(inputs.shape) if i != axis]
    if all(d is not None for d in other):
        n = math.prod(other)
        return (n - 1) / n if n > 1 else 1.0
    tf = _tensorflow()
    shape = tf.shape(inputs, out_type="int64")
    n = tf.cast(tf.reduce_prod(shape) // shape[axis], "float32")
    return tf.where(n > 1.0, (n - 1.0) / tf.maximum(n, 1.0), 1.0)


def _replicas():
    """Replicas in sync in the current tf.distribute context (1 outside any strategy)."""
    tf = _tensorflow()
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context
        return tf.distribute.get_strategy().num_replicas_in_sync
    return context.num_replicas_in_sync


def freeze_batch_norm(model: keras.Model) -> int:
    """Freeze every BatchNormalization of ``model`` (nested models included) in place.

    Each BN then normalises with its moving statistics and keeps gamma, beta and the
    statistics unchanged under ``fit``; every other layer keeps its ``trainable`` setting.
    Layers of this package get ``frozen=True``; other Keras BN layers ``trainable=False``.

    Why ``base(x, training=False)`` alone is not enough in Keras 3 (keras-team/keras#20285):
    ``fit`` calls the outer model with ``training=True`` and that call context reaches
    every nested layer, overriding the ``training=False`` written when the graph was built.
    A Keras BN then uses its moving statistics only because ``trainable=False``; the
    moment the base is unfrozen for fine-tuning (``base.trainable = True``, which sets
    every inner layer), its BNs switch to batch statistics and start moving their
    statistics. A frozen BN of this package forces ``training=False`` inside its own
    ``call`` and refuses ``trainable=True``, so it stays frozen through both.

    Returns:
        The number of BatchNormalization layers frozen.
    """
    from keras_resnet.utils import all_layers

    count = 0
    for layer in all_layers(model):
        if isinstance(layer, BatchNormalization):
            layer.frozen = True
            count += 1
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            count += 1
    return count
