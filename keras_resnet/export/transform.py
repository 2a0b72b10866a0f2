"""The eval transform: how a decoded image of any size becomes the model's input.

A model loaded from a published set (``weights="torchvision..."`` / ``"timm:..."``) brings
the one its publisher states (timm's ``crop_pct`` and interpolation, torchvision's
``Resize(256) + CenterCrop(224)``: :func:`keras_resnet.weights.serving_transform`);
otherwise the export chooses it. Its metadata records it, and ``serving_default`` and
``keras-resnet predict`` apply it with the data pipeline's own code
(:func:`keras_resnet.data.transforms.apply_eval`), which a training run's val / test use too.
"""

from __future__ import annotations

import dataclasses

RESIZE_MODES = ("squash", "shorter_side")
# How "shorter_side" turns sizes into whole pixels (see EvalTransform.rounding)
ROUNDINGS = ("torchvision", "nearest")
# tf.image.resize methods (antialiased when downscaling, except "nearest")
INTERPOLATIONS = ("bilinear", "bicubic", "area", "nearest", "lanczos3", "lanczos5",
                  "gaussian", "mitchellcubic")


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """Center crop, then resize to the model's input size.

    Attributes:
        crop_fraction: the share of each side kept by the center crop, in (0, 1].
            ``1.0`` with ``resize="squash"`` resizes the whole image to the input size
            (aspect ratio not kept), what exports did before this option existed.
        interpolation: the ``tf.image.resize`` method (``"bilinear"``, ``"bicubic"``, ...).
        resize: ``"squash"``: crop ``crop_fraction`` of the height and of the width, then
            resize to the input size. ``"shorter_side"``: as timm / torchvision evaluate,
            resize the shorter side to ``round(size / crop_fraction)`` with the aspect
            ratio kept, then take the central ``size`` (224 px at ``crop_fraction=0.875``
            is ``Resize(256)`` + ``CenterCrop(224)``). The training pipeline evaluates
            val / test with the same code (:func:`keras_resnet.data.transforms.apply_eval`).
        rounding: how ``"shorter_side"`` makes whole pixels. ``"torchvision"``: the longer
            side ``int(shorter * longer / shorter_in)`` and the crop offset
            ``int(round(excess / 2))`` (half to even), as torchvision's ``Resize(int)`` +
            ``CenterCrop`` compute them (and timm's eval transform, which runs them): a
            published set's transform is then reproduced pixel for pixel in geometry.
            ``"nearest"``: the longer side rounded, the offset ``excess // 2``: the data
            pipeline's "imagenet" evaluation before weight sets had transforms (kept for
            runs without weights, so their numbers do not move); it differs from
            torchvision by one pixel of size or offset on some images.
    """

    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    resize: str = "squash"
    rounding: str = "torchvision"

    def __post_init__(self):
        from keras_resnet.utils import check_choice, fail, is_number

        if not is_number(self.crop_fraction) or not 0 < self.crop_fraction <= 1:
            fail("crop_fraction", self.crop_fraction, "a number in (0, 1]")
        object.__setattr__(self, "crop_fraction", float(self.crop_fraction))
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("resize", self.resize, RESIZE_MODES)
        check_choice("rounding", self.rounding, ROUNDINGS)

    def metadata(self) -> dict:
        """The fields as a dict; ``rounding`` only where it is not the default."""
        fields = dataclasses.asdict(self)
        if self.rounding == "torchvision":
            del fields["rounding"]
        return fields

    def describe(self) -> str:
        """One line: "center 0.875 of the shorter side, bilinear" / "whole image, bilinear"."""
        if self.resize == "shorter_side":
            what = f"center {self.crop_fraction:.4g} of the shorter side"
        elif self.crop_fraction == 1.0:
            what = "whole image"
        else:
            what = f"center {self.crop_fraction:.4g} of each side, squashed"
        return f"{what}, {self.interpolation}"
