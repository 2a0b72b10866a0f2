"""A publisher's own per-channel mean / std as a preprocessing (``{"mean", "std"}``).

The reference is torchvision itself: ``transforms.ToTensor()`` + ``transforms.Normalize(mean,
std)`` applied to four 32x32 images with chenyaofo's CIFAR-10 and CIFAR-100 statistics,
stored by tools/make_normalize_fixtures.py (``tests/fixtures/normalize_reference.*``).
Every path an image takes here (``preprocess_input`` on arrays and tensors, its affine form,
the tf.data pipelines of a folder, the one ``check_preprocessing`` behind them) must give
torchvision's numbers; bad values are refused by every command before anything is written.
"""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_resnet import cli
from keras_resnet.data import load_data
from keras_resnet.data.transforms import batch_and_preprocess
from keras_resnet.preprocessing import (
    check_preprocessing, preprocess_affine, preprocess_input, preprocessing_for)
from keras_resnet.weights import published

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
REF = np.load(os.path.join(FIXTURES, "normalize_reference.npz"))
INFO = json.load(open(os.path.join(FIXTURES, "normalize_reference.json")))
IMAGES = REF["images"]  # uint8 [4, 32, 32, 3]
SETS = ("cifar10", "cifar100")


def _mean_std(name):
    return INFO["mean_std"][name]


@pytest.mark.parametrize("name", SETS)
def test_mean_std_equals_torchvision_normalize(name):
    expected = REF[f"{name}_normalized"]
    given = _mean_std(name)
    text = "mean={},std={}".format(*(",".join(str(v) for v in given[k]) for k in ("mean", "std")))
    for spelling in (given, text, {"mean": tuple(given["mean"]), "std": np.array(given["std"])}):
        np.testing.assert_allclose(preprocess_input(IMAGES, mode=spelling), expected, atol=1e-6)
        tensor = preprocess_input(tf.constant(IMAGES), mode=spelling)
        np.testing.assert_allclose(tensor.numpy(), expected, atol=1e-6)
    scale, offset = preprocess_affine(given)  # the pipelines' one multiply-add
    np.testing.assert_allclose(IMAGES.astype(np.float32) * scale + offset, expected, atol=3e-6)
    channels_first = preprocess_input(IMAGES.transpose(0, 3, 1, 2), "channels_first", mode=given)
    np.testing.assert_allclose(channels_first.transpose(0, 2, 3, 1), expected, atol=1e-6)


@pytest.mark.parametrize("name", SETS)
def test_pipelines_normalise_as_torchvision(name, tmp_path):
    """batch_and_preprocess (training and evaluation batches) and a folder's eval_dataset,
    which evaluate and a run's val / test read, on the same images."""
    expected, given = REF[f"{name}_normalized"], _mean_std(name)
    labels = np.arange(len(IMAGES), dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((IMAGES.astype(np.float32), labels))
    x, y = next(iter(batch_and_preprocess(ds, 4, given, drop_remainder=False)))
    np.testing.assert_allclose(x.numpy(), expected, atol=3e-6)
    for split in ("train", "test"):
        for i, image in enumerate(IMAGES):
            folder = tmp_path / split / f"class{i}"
            folder.mkdir(parents=True)
            Image.fromarray(image).save(folder / "0.png")
    data = load_data("folder", data_dir=str(tmp_path))
    x, y = next(iter(data.eval_dataset("test", 4, image_size=32, preprocessing=given, augmentation="cifar")))
    np.testing.assert_allclose(x.numpy(), expected[y.numpy()], atol=3e-6)


def test_the_canonical_form_survives_json_and_modes_stay_names():
    given = _mean_std("cifar10")
    canonical = check_preprocessing("mean=0.4914,0.4822,0.4465,std=0.2023,0.1994,0.201")
    assert canonical == given == json.loads(json.dumps(canonical))
    assert check_preprocessing("mean=0.4914,0.4822,0.4465 std=0.2023,0.1994,0.201") == given
    assert check_preprocessing(json.loads(json.dumps(canonical))) == canonical
    for mode in ("caffe", "tf", "torch", "kinetics"):
        assert check_preprocessing(mode) == mode
    # a publisher's mean / std becomes the mode that has it, where one does
    assert preprocessing_for(published.IMAGENET_MEAN, published.IMAGENET_STD) == "torch"
    assert preprocessing_for((0.5,) * 3, (0.5,) * 3) == "tf"
    assert preprocessing_for(published.CIFAR10_MEAN, published.CIFAR10_STD) == given


@pytest.mark.parametrize("value", [
    "bgr", "mean=0.5,0.5,std=0.2,0.2,0.2", "mean=0.5,0.5,0.5,std=0.2,0,0.2", "mean=a,b,c,std=1,1,1",
    "std=0.2,0.2,0.2,mean=0.5,0.5,0.5", {"mean": [0.5] * 3}, {"mean": [0.5] * 3, "std": [-1.0] * 3},
    {"mean": [0.5] * 3, "std": [float("nan")] * 3}, 3,
])
def test_bad_values_name_the_argument_and_the_value(value):
    with pytest.raises(ValueError, match=r"preprocessing must be one of .*Received: preprocessing=" +
                                         re.escape(repr(value))):
        check_preprocessing(value)
    with pytest.raises(ValueError, match=r"Received: mode="):
        preprocess_input(IMAGES, mode=value)
    with pytest.raises(ValueError, match=r"Received: preprocessing="):
        load_data("digits").eval_dataset("test", 8, preprocessing=value)


@pytest.mark.parametrize("command", [
    ["export", "--model", "ResNet20", "--weights", "none", "--export-dir", "{out}"],
    ["predict", "--model", "ResNet20", "--weights", "none", "{image}"],
    ["evaluate", "ResNet20", "--dataset", "digits"],
])
def test_bad_preprocessing_flag_is_one_line_and_writes_nothing(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "a.png"
    Image.fromarray(IMAGES[0]).save(image)
    args = [a.format(out=tmp_path / "exports", image=image) for a in command]
    code = cli.main([*args, "--preprocessing", "mean=0.5,0.5,std=0.2,0.2,0.2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err  # cli.py's policy: the user's error, exit 2
    assert "preprocessing must be one of" in err and "Received: " in err and "mean=0.5,0.5,std=0.2,0.2,0.2" in err
    assert sorted(os.listdir(tmp_path)) == ["a.png"]  # no export folder, no saved_models/
