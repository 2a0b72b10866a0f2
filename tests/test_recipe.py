"""The auto recipe against what it promises (issue 12): BatchNorm statistics that follow the
weights within an epoch, a schedule per run length, He et al. 2015 kept as written by
``--recipe paper``, flips dropped where real images change class under them, a validation
split held out of train (never selecting on test), and the precision training chooses."""

import json
import math

import numpy as np
import pytest

from keras_resnet import hardware, training
from keras_resnet.data import digits_images, load_data
from keras_resnet.data.flips import flips_keep_classes
from keras_resnet.specs import model_info
from keras_resnet.training import recipe


def test_bn_momentum_averages_over_a_quarter_epoch_within_keras_range():
    # 31 steps an epoch (the issue's digits folder at batch 128): Keras' 0.99 averages
    # over ~100 steps, three epochs; the auto recipe's window fits inside one epoch.
    for steps in (5, 31, 40, 100, 391, 5005):
        m = recipe.bn_momentum_for(steps)
        assert 0.9 <= m <= 0.99
        window = 1 / (1 - m)
        assert window <= max(steps / 4, 10) + 1e-6 or m == 0.99, (steps, m)
    assert recipe.bn_momentum_for(31) == 0.9
    assert recipe.bn_momentum_for(5005) == 0.99  # ImageNet at batch 256: Keras' default kept
    assert recipe.bn_momentum_for(200) == pytest.approx(0.98)
    assert training.bn_momentum_for is recipe.bn_momentum_for  # the name the README gives


@pytest.mark.parametrize("family,epochs,schedule", [
    ("cifar", 8, "cosine"), ("cifar", 30, "cosine"), ("cifar", 164, "step"),
    ("imagenet", 10, "cosine"), ("imagenet", 90, "step"), ("digits", 8, "cosine"),
])
def test_schedule_follows_the_run_length(family, epochs, schedule):
    row = recipe.default_recipe(family, epochs=epochs)
    assert row["schedule"] == schedule
    assert row["bn_momentum"] == "auto"
    if schedule == "cosine" and family != "digits":
        assert 0 < row["warmup_epochs"] <= epochs / 4  # a warm-up, at most a quarter of the run
        assert "short run" in row["reason"]


def test_paper_recipe_is_he_et_al_section_4_2():
    row = recipe.default_recipe("cifar", epochs=8, recipe="paper")
    # batch 128, lr 0.1 at batch 128 (0.2 per 256), step /10 at 50% and 75%, wd 1e-4
    assert (row["batch_size"], row["lr"] * 128 / 256, row["schedule"], row["weight_decay"]) == (128, 0.1, "step", 1e-4)
    assert "bn_momentum" not in row and row["warmup_epochs"] == 0
    deep = recipe.default_recipe("cifar", epochs=8, recipe="paper", model_info=model_info("ResNet110"))
    assert deep["warmup_epochs"] == recipe.PAPER_WARMUP  # lr 0.01 until training error < 80%
    # the bundled digits (32x32) take the paper's CIFAR recipe, ResNet-110's warm-up included
    digits = recipe.default_recipe("digits", recipe="paper", model_info=model_info("ResNet110"))
    assert digits["warmup_epochs"] == recipe.PAPER_WARMUP and digits["batch_size"] == 128
    assert digits["reason"].startswith("paper: He et al. 2015 sec. 4.2")
    # a recipe name that does not exist is refused by its keyword, before any work
    with pytest.raises(ValueError, match="Received: recipe='fast'"):
        training.train(recipe="fast")
    # CIFAR-10 at batch 128: 391 steps an epoch, 64k iterations = 164 epochs (the recipe's)
    assert math.ceil(recipe.PAPER_ITERATIONS / math.ceil(50_000 / 128)) == recipe.RECIPES["cifar"]["epochs"]


def _digits_arrays():
    images, labels = digits_images()
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images, labels


def test_flips_dropped_on_real_digits_and_kept_where_classes_are_mirror_symmetric():
    images, labels = _digits_arrays()  # scikit-learn's handwritten digits
    keep, why = flips_keep_classes(images, labels)
    assert not keep, why
    # the same digits with every mirror image added to its class: flips keep the classes
    both = np.concatenate([images, images[:, :, ::-1]])
    keep, why = flips_keep_classes(both, np.concatenate([labels, labels]))
    assert keep, why
    # the bundled digits' default preset has no flip to drop: kept as it is, nothing checked
    from keras_resnet.data import load_data

    data = load_data("digits")
    assert data.auto_augmentation(0) == (data.default_augmentation, None) == ("crop", None)


def test_validation_is_held_out_of_train_and_test_is_untouched():
    data = load_data("digits", seed=0)
    held = data.with_validation_holdout(0.1, seed=3)
    assert held.num_val > 0 and held.num_train + held.num_val == data.num_train
    assert held.num_test == data.num_test
    counts = np.bincount(held._split("val").labels)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 2  # stratified
    again = data.with_validation_holdout(0.1, seed=3)
    np.testing.assert_array_equal(again._split("val").labels, held._split("val").labels)
    assert held.split_info["validation"]["seed"] == 3


def test_auto_precision_per_device_and_the_override(monkeypatch):
    monkeypatch.delenv("KERAS_RESNET_PRECISION", raising=False)
    monkeypatch.setattr(hardware, "gpu_count", lambda: 0)
    for fast_bf16, expected in ((True, "mixed_bfloat16"), (False, "fp32")):
        monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: fast_bf16)
        assert hardware.resolve_precision("auto") == expected
    monkeypatch.setattr(hardware, "gpu_count", lambda: 1)
    assert hardware.resolve_precision("auto") == "mixed_float16"
    monkeypatch.setenv("KERAS_RESNET_PRECISION", "fp32")
    assert hardware.resolve_precision("auto") == "fp32"  # the override wins over auto
    assert hardware.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"  # not over an explicit one
    monkeypatch.setenv("KERAS_RESNET_PRECISION", "auto")
    assert hardware.resolve_precision("auto") == "mixed_float16"  # "auto" there changes nothing


def test_a_short_folder_run_records_its_recipe_and_never_selects_on_test(tmp_path, monkeypatch):
    from PIL import Image

    images, labels = _digits_arrays()
    root = tmp_path / "digits"
    for split, index in (("train", range(0, 600)), ("test", range(600, 800))):
        for i in index:
            folder = root / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i].astype(np.uint8)).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    history, _ = training.train("ResNet20", data_dir=str(root), epochs=2, precision="fp32",
                                model_options=dict(width_multiplier=0.25), output=str(out), export=False,
                                verbose=0)
    config = json.loads((out / "config.json").read_text())
    assert config["schedule"] == "cosine" and config["warmup_epochs"] == 0.5
    assert config["augmentation"] == "crop" and "no flips" in config["augmentation_reason"]
    steps = config["steps_per_epoch"]
    assert config["model_options"]["bn_momentum"] == recipe.bn_momentum_for(steps)
    assert config["num_train"] + config["num_val"] == 600 and config["num_test"] == 200
    assert config["splits"]["validation"]["fraction"] == 0.1
    assert len(history["val_accuracy"]) == 2 and (out / "best.keras").exists()

    none = tmp_path / "none"
    history, _ = training.train("ResNet20", data_dir=str(root), epochs=1, precision="fp32", val_fraction=0.0,
                                model_options=dict(width_multiplier=0.25), output=str(none), export=False,
                                verbose=0)
    assert "val_accuracy" not in history and not (none / "best.keras").exists()
    assert json.loads((none / "config.json").read_text())["num_train"] == 600


def test_paper_recipe_runs_64k_iterations(monkeypatch):
    from keras_resnet.training.loop import resolve

    digits = load_data("digits", seed=0)
    config = training.TrainConfig.from_kwargs(model="ResNet20", recipe_name="paper")

    class OneDevice:
        num_replicas_in_sync = 1

    resolved, facts = resolve(config, digits, OneDevice())
    steps = facts["steps_per_epoch"]
    assert resolved.epochs == math.ceil(recipe.PAPER_ITERATIONS / steps)
    assert resolved.schedule == "step" and resolved.global_batch_size == 128
    assert "bn_momentum" not in resolved.model_options
