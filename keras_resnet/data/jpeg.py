"""JPEG files in the pipelines: the crop drawn from the header, only its window decoded.

A training pipeline over image files used to decode every whole JPEG, then crop, then
resize. For a JPEG (found by its magic bytes: ``tf.io.is_jpeg``) the pipelines now

1. read the size from the header (``tf.io.extract_jpeg_shape``: the SOF segment, no
   pixel decoded) and draw the stateless crop from it. The decoded image has that size,
   so the window is the one the old path drew from the decoded image, for the same seed;
2. decode only that window (``tf.image.decode_and_crop_jpeg``, as TF Model Garden's
   ImageNet input does). libjpeg-turbo computes the first and last row and column of a
   cropped window as if they were the image's edge: with chroma subsampling (4:2:0,
   4:2:2: most photos) the upsampled colour of that one-pixel ring differs from the
   whole image's decode (by up to ~20 levels, measured). The window is therefore
   decoded with :data:`MARGIN` pixels more on each side and the margin sliced off,
   which makes the window bit-for-bit the slice of the full decode;
3. with ``jpeg_decode="scaled"``, where the window is at least twice the output on both
   axes, decode it at 1/2, 1/4 or 1/8 scale (libjpeg's DCT-domain downscaling: the
   ``ratio`` of ``decode_jpeg``, whose window is then given in the scaled image's
   pixels), and map the window's exact, fractional position in the scaled image onto
   the output grid with the same antialiased triangle filter (``ScaleAndTranslate``,
   what ``tf.image.resize(..., antialias=True)`` runs). The scaled decode averages each
   ``ratio x ratio`` block in the DCT domain before the filter sees it, so its pixels
   differ from the full decode's by a few levels (see BENCHMARKS.md for the figures on
   real photos); the geometry is the same. A window no larger than the output on both
   axes is enlarged by ``ResizeBilinear`` (the triangle filter without antialiasing is
   bilinear interpolation: within 0.005 of 255, several times cheaper).

Evaluation (resize the shorter side to ``size / crop_fraction``, center crop: 0.875 by
default, a weight set's own when fine-tuning) decodes whole files, at 1/2, 1/4 or 1/8
scale under ``"scaled"`` only where the reduced image is still :data:`EVAL_HEADROOM` times
the resized one, and resamples the crop's exact window with the transform's kernel
(triangle for bilinear, Keys cubic for bicubic).

PNG, BMP and GIF files keep the old path (decode all, crop, resize).

``JPEG_DECODES`` names the three paths: ``"full"`` (decode the whole file: the old path),
``"window"`` (header crop + window decode: bit-identical batches to ``"full"``) and
``"scaled"`` (``"window"`` plus DCT-domain downscaling where the window is at least twice
the output: the default).
"""

from __future__ import annotations

import tensorflow as tf

JPEG_DECODES = ("full", "window", "scaled")
# The largest DCT-domain downscaling libjpeg offers is 1/8; 2, 4 and 8 are the ratios
# decode_jpeg accepts.
DCT_RATIOS = (8, 4, 2)
# Evaluation decodes at 1/r only where the reduced image is still at least twice the
# resized one, so the antialiased resize, not libjpeg's sharper DCT reduction, shapes
# the result: at r = 2 with no headroom (a 512-pixel photo evaluated at 224) the two
# differed from the full decode by 2.3-2.6 levels on average and up to 70 at edges,
# against 0.7-0.9 where the filter still halved the image (BENCHMARKS.md).
EVAL_HEADROOM = 2
# Pixels decoded around a window and sliced off: libjpeg-turbo's fancy upsampling of a
# cropped window differs from the whole image's in the window's outer one-pixel ring.
MARGIN = 2


def header_size(encoded):
    """int32 [2] (height, width) of a JPEG from its header, nothing decoded."""
    return tf.io.extract_jpeg_shape(encoded)[:2]


def dct_level(extent, out_size, mode, headroom=1):
    """``k`` of the DCT-domain scale 1 / 2**k (0 to 3) to decode a window of ``extent``
    (int32 [2]) at for an output of ``out_size`` (int32 [2]): the largest ``r = 2**k``
    of 1, 2, 4, 8 with ``extent >= headroom * r * out_size`` on both axes under
    ``"scaled"``, else 0. Training takes ``headroom`` 1 (a window at least twice the
    output is decoded at 1/2); evaluation :data:`EVAL_HEADROOM`."""
    level = tf.constant(0, tf.int32)
    if mode != "scaled":
        return level
    for k, r in enumerate(DCT_RATIOS[::-1], start=1):
        fits = tf.reduce_all(extent >= headroom * r * out_size)
        level = tf.where(fits, tf.constant(k, tf.int32), level)
    return level


def by_level(level, branch):
    """``branch(ratio)`` for the ratio ``2**level``: decode_jpeg takes its ``ratio`` as
    a constant, so each of 1, 2, 4, 8 is its own branch of a ``tf.switch_case``."""
    ratios = (1,) + DCT_RATIOS[::-1]
    return tf.switch_case(level, [lambda r=r: branch(r) for r in ratios])


def _decode_region(encoded, begin, end, ratio):
    """uint8 pixels [begin, end) (int32 [2] each, in the image scaled by 1/``ratio``),
    decoded with ``MARGIN`` more pixels around them (clamped to the image) and sliced:
    bit-for-bit the same pixels as slicing the whole (scaled) decode."""
    full = header_size(encoded)
    scaled = (full + ratio - 1) // ratio  # libjpeg's scaled size: ceil(size / ratio)
    lo = tf.maximum(begin - MARGIN, 0)
    hi = tf.minimum(end + MARGIN, scaled)
    window = tf.concat([lo, hi - lo], axis=0)
    region = tf.io.decode_and_crop_jpeg(encoded, window, channels=3, ratio=ratio)
    inner = begin - lo
    return tf.slice(region, tf.concat([inner, [0]], 0), tf.concat([end - begin, [-1]], 0))


def _decode_scaled(encoded, begin, extent, ratio):
    """Window ``begin, extent`` (full-resolution pixels) at 1/``ratio`` scale: the uint8
    pixels of the whole scaled pixels it touches, and where the window lies in them
    (float32 [2] offset and extent, in scaled pixels)."""
    r = ratio
    lo = begin // r
    hi = (begin + extent + r - 1) // r
    pixels = _decode_region(encoded, lo, hi, r)
    offset = tf.cast(begin, tf.float32) / r - tf.cast(lo, tf.float32)
    return pixels, offset, tf.cast(extent, tf.float32) / r


def resample(image, offset, extent, out_size, kernel="triangle"):
    """float32 [out_h, out_w, 3]: the window at ``offset`` with ``extent`` (float32 [2],
    pixels of ``image``, fractions allowed) mapped onto an ``out_size`` grid by the
    antialiased ``kernel`` filter: "triangle" is ``tf.image.resize(..., "bilinear",
    antialias=True)``, "keyscubic" its "bicubic" (the same kernel op,
    ``ScaleAndTranslate``, given the window's scale and translation instead of the whole
    image's)."""
    out_f = tf.cast(out_size, tf.float32)
    scale = out_f / extent
    images = tf.cast(image, tf.float32)[None]
    out = tf.raw_ops.ScaleAndTranslate(
        images=images, size=out_size, scale=scale, translation=-offset * scale,
        kernel_type=kernel, antialias=True,
    )
    return out[0]


def decode_resized(encoded, begin, extent, out_size, mode, resize):
    """The window ``begin, extent`` (int32 [2] each, full-resolution pixels of the JPEG
    ``encoded``) as float32 ``out_size`` (int32 [2]). Under ``"window"`` the window's
    exact pixels go through ``resize(image, out_size)`` (the old path's resize: the
    result equals the old path's bit for bit). Under ``"scaled"`` a window at least twice
    the output is decoded at reduced scale and :func:`resample`\\ d, one no larger than
    the output on both axes is enlarged by ``ResizeBilinear``, others are resized as
    under ``"window"``."""

    def decode(ratio):
        if ratio == 1:
            pixels = tf.cast(_decode_region(encoded, begin, begin + extent, 1), tf.float32)
            if mode != "scaled":
                return resize(pixels, out_size)
            # Enlarging on both axes, antialiasing has nothing to do: the triangle filter
            # is bilinear interpolation (within 0.005 of 255), and ResizeBilinear is
            # several times cheaper than ScaleAndTranslate.
            return tf.cond(
                tf.reduce_all(extent <= out_size),
                lambda: tf.image.resize(pixels, out_size, method="bilinear"),
                lambda: resize(pixels, out_size),
            )
        pixels, offset, scaled_extent = _decode_scaled(encoded, begin, extent, ratio)
        return resample(pixels, offset, scaled_extent, out_size)

    if mode != "scaled":
        return decode(1)
    return by_level(dct_level(extent, out_size, mode), decode)
