"""Do horizontal flips keep an image's class? A check made from the training images.

Random horizontal flips are part of the CIFAR and ImageNet augmentations because a
mirrored cat is still a cat. A mirrored 3 or 7 is not a digit, and the same is true of
letters, most symbols and any image whose classes differ by their left-right order. The
auto recipe asks the data: a nearest-class-mean classifier on small grayscale copies of
(a sample of) the training images classifies them, then their mirror images, against
the class means of the unflipped images. Where the mirror images keep at least
:data:`MIN_RATIO` of the accuracy, flips keep the classes; where they lose more, they
change them and the augmentation drops the flip. When the classifier is too weak to
tell (accuracy under twice chance, as on most photos), flips are kept: they are the
published default there.
"""

from __future__ import annotations

import numpy as np

SIDE = 16  # the images are compared at 16x16 gray
MIN_RATIO = 0.9  # accuracy on mirror images / accuracy on the images
SAMPLE = 2000  # at most this many training images, chosen with the seed


def _small_gray(images: np.ndarray) -> np.ndarray:
    """[n, S, S, 3] uint8 -> [n, SIDE*SIDE] float, each row zero-mean and unit-norm."""
    import tensorflow as tf

    gray = np.asarray(images, dtype=np.float32).mean(axis=-1, keepdims=True)
    small = tf.image.resize(gray, (SIDE, SIDE), method="area", antialias=True).numpy()
    flat = small.reshape(len(small), -1)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, 1e-6)


def flip_accuracy_ratio(images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(accuracy, mirrored accuracy)`` of the nearest class mean (by correlation)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    flat = _small_gray(images)
    mirrored = _small_gray(np.asarray(images)[:, :, ::-1])
    means = np.stack([flat[labels == c].mean(axis=0) for c in classes])
    accuracy = float(np.mean(classes[np.argmax(flat @ means.T, axis=1)] == labels))
    mirrored_accuracy = float(np.mean(classes[np.argmax(mirrored @ means.T, axis=1)] == labels))
    return accuracy, mirrored_accuracy


def flips_keep_classes(images: np.ndarray, labels: np.ndarray) -> tuple[bool, str]:
    """``(keep flips?, why)`` for these training images (see the module docstring)."""
    num_classes = len(np.unique(labels))
    if num_classes < 2:
        return True, "one class"
    accuracy, mirrored = flip_accuracy_ratio(images, labels)
    if accuracy < 2.0 / num_classes:
        return True, f"class means too weak to tell ({accuracy:.0%} accuracy): flips kept"
    ratio = mirrored / accuracy
    keep = ratio >= MIN_RATIO
    return keep, (f"mirror images keep {ratio:.0%} of the class-mean accuracy "
                  f"({mirrored:.0%} of {accuracy:.0%}): " + ("flips kept" if keep else "no flips"))
