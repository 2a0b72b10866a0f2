"""A weight set's evaluation transform in the pipelines, ``evaluate`` and the export (issue 23).

Outside reference: ``tests/fixtures/eval_transform_reference.npz``, written by
``tools/make_eval_transform_fixtures.py`` with torchvision's own ``ImageClassification``
preset (``Resize(232 / 256 scaled) + CenterCrop``, bilinear, antialiased, on the uint8
tensor) and timm's ``resolve_data_config`` / ``create_transform`` eval transform of
``resnet50.a1_in1k`` (crop_pct 0.95, bicubic, in Pillow), at 64 px, on scikit-image's
photos. The transforms under test are built from this package's registry rows of those
sets, through the same function a fine-tuning run uses.
"""

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_resnet import training, weights
from keras_resnet.data import transforms
from keras_resnet.export import EvalTransform
from keras_resnet.training import finetune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "eval_transform_reference.npz")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# fixture key -> (our model, the set whose registry row states the transform)
SETS = {"torchvision_v2": ("ResNet50V1_5", "torchvision:IMAGENET1K_V2"),
        "torchvision_v1": ("ResNet50V1_5", "torchvision:IMAGENET1K_V1"),
        "timm_bicubic_095": ("ResNet50V1_5", "timm:resnet50.a1_in1k")}


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def _photo(name, meta=None):
    import skimage.data

    pixels = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
    if meta is not None:  # the very photo the fixture was made from
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == meta["photos"][name]["sha256"], name
    return pixels


def _set_transform(key, size):
    """The EvalTransform a fine-tuning run at ``size`` px derives from the set's registry row."""
    model, name = SETS[key]
    published = weights.eval_transform(name, model).as_dict()
    transform, _ = finetune.run_eval_transform("imagenet", published, size, name)
    return EvalTransform(**transform)


def _jpeg(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# ------------------------------------------------------------- against torchvision / timm

# Measured at 64 px on the four photos (12,288 values each), after rounding to uint8:
# torchvision's bilinear presets: 0 values differ (the same antialiased triangle filter, in
# float, and the same integer geometry); timm's bicubic: max 9, mean <= 0.10 levels, since
# Pillow resizes in two passes with an 8-bit, clipped intermediate where tf.image runs one
# float pass of the same Keys cubic (a = -0.5). The pipeline's old 0.875 bilinear crop was
# 6.8 to 35 levels off on average: a crop of another size, not a kernel's rounding.
TOLERANCE = {"torchvision_v2": (1, 0.02), "torchvision_v1": (1, 0.02), "timm_bicubic_095": (12, 0.15)}
OLD_CROP_AT_LEAST = 5.0


@pytest.mark.parametrize("key", list(SETS))
def test_the_sets_transform_matches_the_publishers_own(reference, key):
    arrays, meta = reference
    size = meta["size"]
    transform = _set_transform(key, size)
    assert transform.resize == "shorter_side" and transform.rounding == "torchvision"
    assert round(size / transform.crop_fraction) == meta["resize"][key]  # the publisher's resize at 64 px
    worst, means = 0, []
    for name in PHOTOS:
        pixels = _photo(name, meta)
        ours = transforms.to_uint8(transforms.eval_image(pixels, transform, size).numpy()).astype(np.int32)
        theirs = arrays[f"{key}/{name}"].astype(np.int32)
        worst, means = max(worst, np.abs(ours - theirs).max()), means + [np.abs(ours - theirs).mean()]
        if key != "torchvision_v1":  # what these runs evaluated with before: the 0.875 bilinear crop
            old = transforms.to_uint8(transforms.eval_image(pixels, "center", size).numpy()).astype(np.int32)
            assert np.abs(old - theirs).mean() > OLD_CROP_AT_LEAST, name
    max_tolerance, mean_tolerance = TOLERANCE[key]
    assert worst <= max_tolerance and max(means) <= mean_tolerance, (worst, means)


def test_a_jpeg_keeps_the_scaled_decode_and_its_rule_under_a_sets_transform(reference):
    arrays, meta = reference
    size = meta["size"]
    transform = _set_transform("timm_bicubic_095", size)
    for name in PHOTOS:
        encoded = tf.constant(_jpeg(_photo(name, meta)))
        full = transforms.eval_image_encoded(encoded, transform, size, "full").numpy()
        scaled = transforms.eval_image_encoded(encoded, transform, size, "scaled").numpy()
        theirs = arrays[f"timm_bicubic_095/{name}"]
        # shorter sides of 300 to 512 px are over 4 x 67: decoded at 1/2 or less, resampled
        # with the bicubic kernel; JPEG quality 90 costs about a level (measured 0.9-1.1)
        assert 0.1 < np.abs(scaled - full).mean() < 1.0, name
        assert np.abs(full - theirs).mean() < 1.5 and np.abs(scaled - theirs).mean() < 1.5, name
    # below EVAL_HEADROOM (shorter side < 2 x 2 x 67) the file is decoded whole: equal bit for bit
    small = np.asarray(Image.fromarray(_photo("chelsea")).resize((300, 200), Image.BICUBIC))
    encoded = tf.constant(_jpeg(small))
    np.testing.assert_array_equal(transforms.eval_image_encoded(encoded, transform, size, "scaled").numpy(),
                                  transforms.eval_image_encoded(encoded, transform, size, "full").numpy())


def test_which_transform_a_run_uses():
    tv2 = weights.eval_transform("torchvision:IMAGENET1K_V2", "ResNet50V1_5").as_dict()
    at_224, why = finetune.run_eval_transform("cifar", tv2, 224, "torchvision:IMAGENET1K_V2")
    assert at_224 == {"crop_fraction": 224 / 232, "interpolation": "bilinear", "resize": "shorter_side",
                      "rounding": "torchvision"}
    assert "Resize(232) + CenterCrop(224)" in why
    at_96, why = finetune.run_eval_transform("imagenet", tv2, 96, "torchvision")
    assert at_96 == at_224 and "at 96 px" in why  # the fraction kept at another size, as timm's crop_pct
    # CIFAR sets evaluate the whole 32 px image: the augmentation's own transform stays
    cifar = weights.eval_transform("akamaster", "ResNet20").as_dict()
    assert finetune.run_eval_transform("cifar", cifar, 64, "akamaster")[0] == \
        {"crop_fraction": 1.0, "interpolation": "bilinear", "resize": "squash", "rounding": "torchvision"}
    assert EvalTransform(**finetune.run_eval_transform("imagenet", cifar, 64, "akamaster")[0]) == \
        transforms.EVAL_KINDS["center"]
    assert finetune.run_eval_transform("imagenet", None, 224)[0]["rounding"] == "nearest"  # as before
    # a run folder from before the rounding field: evaluate / export --run keep its rounding
    old_run = {"eval_transform": {"crop_fraction": 0.875, "interpolation": "bilinear", "resize": "shorter_side"}}
    assert finetune.recorded_eval_transform(old_run) == transforms.EVAL_KINDS["center"]
    assert finetune.recorded_eval_transform({}) is None


# ------------------------------------------------- a fine-tuning run, evaluate and the export


def _photo_folder(root, size=(120, 90)):
    """train/ and test/ of 3 classes: crops of real photos, JPEG, ``size`` (w, h)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("test", 3)):
        for name in PHOTOS[:3]:
            photo = _photo(name)
            os.makedirs(os.path.join(root, split, name))
            for i in range(count):
                h, w = photo.shape[0] * 2 // 3, photo.shape[1] * 2 // 3
                y, x = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
                crop = Image.fromarray(photo[y:y + h, x:x + w]).resize(size, Image.BICUBIC)
                crop.save(os.path.join(root, split, name, f"{i}.jpg"), quality=90)
    return root


@pytest.mark.slow  # a run, its evaluation and a SavedModel: about a minute here
def test_a_fine_tuned_run_evaluates_and_exports_with_the_sets_transform(tmp_path, monkeypatch, capsys):
    """The run's weights are a random ResNet-20 file (no torchvision / timm file can be had
    offline); the registry's answer for it is timm:resnet50.a1_in1k's row, transform and all."""
    from keras_resnet.preprocessing import preprocess_input
    from tests.test_finetune import SMALL, write_pretrained

    timm_row = weights.published.find_set("ResNet50V1_5", "timm:resnet50.a1_in1k")
    monkeypatch.setattr(finetune, "weight_set",
                        lambda model, w: dataclasses.replace(timm_row, model=model, options=()))
    monkeypatch.chdir(tmp_path)
    folder = _photo_folder(tmp_path / "photos")
    pretrained = write_pretrained(tmp_path / "resnet20.h5")
    output = tmp_path / "run"
    training.train("ResNet20", weights=str(pretrained), data_dir=str(folder), epochs=1, finetune="head",
                   image_size=32, output=str(output), **dict(SMALL, export=True))
    header = capsys.readouterr().out
    config = json.loads((output / "config.json").read_text())
    metrics = json.loads((output / "metrics.json").read_text())
    expected = {"crop_fraction": 224 / 235, "interpolation": "bicubic", "resize": "shorter_side"}
    assert config["eval_transform"] == {**expected, "rounding": "torchvision"}
    assert "eval center 0.9532 of the shorter side, bicubic (timm:resnet50.a1_in1k's crop fraction" in header
    assert "at 32 px" in header and "Note " not in header
    transform = EvalTransform(**expected)

    # the test files through the pipeline's transform (decoded whole: 90 px < 2 x 2 x 34)
    from keras_resnet.training.run_folder import load_run

    net, _ = load_run(str(output))
    files = sorted(str(p) for p in (folder / "test").glob("*/*.jpg"))
    labels = np.array([config["class_names"].index(os.path.basename(os.path.dirname(f))) for f in files])
    encoded = [Path(f).read_bytes() for f in files]

    def pipeline_images(t):
        return np.stack([transforms.eval_image_encoded(tf.constant(b), t, 32, "scaled").numpy() for b in encoded])

    ours, default = pipeline_images(transform), pipeline_images(transforms.eval_kind(config["augmentation"]))
    assert np.abs(ours - default).mean() > 5.0  # the set's transform is not the augmentation's

    def loss_of(images):
        images = preprocess_input(images.astype(np.float32), mode=config["preprocessing"])
        probabilities = net.predict(images, verbose=0)
        decay = float(sum(np.sum(loss) for loss in net.losses))  # the L2 weight decay train puts in the loss
        return float(np.mean(-np.log(probabilities[np.arange(len(labels)), labels]))) + decay

    # evaluate on the run folder: the loss of the images the set's transform makes (held in
    # memory as uint8, as the pipeline caches a small folder's decoded images)
    result = training.evaluate(str(output))
    assert result["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    ours_loss, default_loss = loss_of(transforms.to_uint8(ours)), loss_of(transforms.to_uint8(default))
    # measured: 2e-8 from the set's transform, 9e-5 from the augmentation's (a barely trained head)
    assert abs(result["loss"] - ours_loss) < 1e-6
    assert abs(result["loss"] - default_loss) > 20 * abs(result["loss"] - ours_loss), (default_loss, ours_loss)

    # the export: its metadata and serving_default's pixels are the pipeline's
    from keras_resnet.export import saved_model_metadata

    served_meta = saved_model_metadata(metrics["export_path"])
    assert served_meta["eval_transform"] == expected
    loaded = tf.saved_model.load(metrics["export_path"])
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))

    def off(pixels):  # serving_default's scores against predict_pixels on the pipeline's pixels
        probabilities = loaded.signatures["predict_pixels"](pixels=tf.constant(pixels))["probabilities"].numpy()
        top = np.take_along_axis(probabilities, served["classes"].numpy(), axis=1)
        return np.abs(top - served["scores"].numpy()).max()

    assert off(ours) < 1e-5
    assert off(default) > 20 * max(off(ours), 1e-7), (off(default), off(ours))
    # keras-resnet export --run bakes the run's transform too (it used to take the default)
    from keras_resnet import cli

    again = tmp_path / "again"
    assert cli.main(["export", "--run", str(output), "--export-dir", str(again), "--no-warmup"]) == 0
    assert saved_model_metadata(str(again / "1"))["eval_transform"] == expected


def test_tune_validates_its_trials_with_the_sets_transform(tmp_path, monkeypatch):
    from keras_resnet.tuning.hypermodel import HyperResNet
    from tests.test_finetune import write_pretrained

    timm_row = weights.published.find_set("ResNet50V1_5", "timm:resnet50.a1_in1k")
    monkeypatch.setattr(finetune, "weight_set",
                        lambda model, w: dataclasses.replace(timm_row, model=model, options=()))
    pretrained = write_pretrained(tmp_path / "resnet20.h5", options={})
    hypermodel = HyperResNet("digits", weights=str(pretrained), image_size=32, precision="fp32")
    assert hypermodel.eval_transform({"augmentation": "cifar"}) == \
        EvalTransform(crop_fraction=224 / 235, interpolation="bicubic", resize="shorter_side")
    assert HyperResNet("digits", precision="fp32").eval_transform({"augmentation": "cifar"}) is None
