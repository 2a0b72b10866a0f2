"""Batch normalization for keras_resnet models.

Placeholder: a registered subclass of Keras' own layer, with exactly its variables
and names. The fused TensorFlow kernel (performance issue) replaces the body.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_resnet")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization (same variables, same weight-file layout)."""
