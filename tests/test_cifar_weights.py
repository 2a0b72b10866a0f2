"""Published CIFAR weight sets through ``weights=``, against the publishers' own models.

- akamaster/pytorch_resnet_cifar10: its REAL ResNet-20 file (``fixtures/akamaster/``,
  BSD-2-Clause, committed unchanged) must give the logits akamaster's own ``resnet.py`` gives
  (``tools/make_cifar_fixtures.py``), under its published name, renamed, and from the cache.
- chenyaofo/pytorch-cifar-models: the deterministic tensors of ``tests/torch_files.tensor_for``
  in its real state-dict layout, written as ``torch.save`` does, must give the logits its
  own ``resnet.py`` gave for the same tensors.

The images are scikit-image photos resized to 32x32 and noise (uint8, in the npz); each is
preprocessed with the transform the loaded model reports (:func:`weights.transform_of`), so
the publishers' mean / std are checked too. Numbers are compared in float32.
"""

import json
import os
import shutil
import urllib.request

import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import cli, weights
from keras_resnet.layers import ZeroPadShortcut
from keras_resnet.utils import dtype_policy
from keras_resnet.weights import published
from tests.conftest import cache_chenyaofo
from tests.torch_files import state_from_manifest, write_torch_zip

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
AKAMASTER = os.path.join(FIXTURES, "akamaster", "resnet20-12fca82f.th")
INFO = json.load(open(os.path.join(FIXTURES, "cifar_reference.json")))
REF = np.load(os.path.join(FIXTURES, "cifar_reference.npz"))
IMAGES = REF["images"]


def _logits(model):
    t = weights.transform_of(model)
    x = (IMAGES.astype(np.float32) / 255.0 - np.float32(t.mean)) / np.float32(t.std)
    return np.asarray(model(x, training=False))


def _rel(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _cifar(depth=20, **kwargs):
    with dtype_policy("fp32"):  # numbers are compared: float32 whatever the global policy
        return kr.CifarResNet(depth, classifier_activation=None, **kwargs)


# ------------------------------------------------------------------ option A, both sides

def test_zero_pad_both_sides_is_akamasters_padding():
    """akamaster's ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``:
    16 -> 32 channels puts 8 zero channels before the subsampled input and 8 after."""
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 16)).astype(np.float32)
    planes = 32
    expected = np.pad(x[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (planes // 4, planes // 4)))
    with dtype_policy("fp32"):
        ours = np.asarray(ZeroPadShortcut(planes, 2, pad_side="both")(x))
        end = np.asarray(ZeroPadShortcut(planes, 2)(x))  # the default: zeros after
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(end, np.pad(x[:, ::2, ::2, :], ((0, 0),) * 3 + ((0, 16),)))


def test_zero_pad_side_is_checked_and_round_trips(tmp_path):
    with pytest.raises(ValueError, match=r"zero_pad_side must be one of \('end', 'both'\). "
                                         r"Received: zero_pad_side='middle'"):
        kr.CifarResNet(20, zero_pad_side="middle")
    with pytest.raises(ValueError, match="pad_side must be one of .* Received: pad_side='left'"):
        ZeroPadShortcut(32, 2, pad_side="left")
    model = kr.CifarResNet(8, zero_pad_side="both", classifier_activation=None)
    pads = [layer for layer in model.layers if isinstance(layer, ZeroPadShortcut)]
    assert len(pads) == 2 and all(layer.pad_side == "both" for layer in pads)
    default = kr.CifarResNet(8)
    assert all(layer.pad_side == "end" for layer in default.layers
               if isinstance(layer, ZeroPadShortcut))
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    ref = np.asarray(model(x))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), ref, rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert {layer.pad_side for layer in loaded.layers if isinstance(layer, ZeroPadShortcut)} == {"both"}
    np.testing.assert_allclose(np.asarray(loaded(x)), ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ akamaster, the real file

def _check_akamaster(model):
    ws = weights.weight_set_of(model)
    assert ws is model.weight_set and ws.name == "akamaster:cifar10" and ws.model == "ResNet20"
    assert (ws.top1, ws.license, ws.classes) == (91.73, "BSD-2-Clause", 10)
    t = weights.transform_of(model)
    assert (t.crop, t.mean, t.std) == (32, published.IMAGENET_MEAN, published.IMAGENET_STD)
    pads = {layer.pad_side for layer in model.layers if isinstance(layer, ZeroPadShortcut)}
    assert pads == {"both"}
    rel = _rel(_logits(model), REF["akamaster_resnet20_logits"])
    assert rel < 1e-4, f"max relative logit difference {rel:.2e}"


def test_akamaster_file_gives_akamasters_logits():
    """The published file under its own name: nothing else to pass."""
    _check_akamaster(_cifar(weights=AKAMASTER))


def test_akamaster_file_recognised_under_any_name(tmp_path):
    """Renamed as PyTorch's ImageNet example names checkpoints: still akamaster's ResNet-20."""
    renamed = str(tmp_path / "model_best.pth.tar")
    shutil.copy(AKAMASTER, renamed)
    with dtype_policy("fp32"):
        model = kr.get_model("ResNet20", weights=renamed, classifier_activation=None)
    _check_akamaster(model)
    with pytest.raises(ValueError, match=r"akamaster:cifar10 for ResNet20; the model is ResNet56"):
        kr.CifarResNet(56, weights=renamed)


def test_akamaster_by_name_from_the_cache_offline(offline):
    shutil.copy(AKAMASTER, offline / "resnet20-12fca82f.th")
    with dtype_policy("fp32"):
        model = kr.get_model("ResNet20", weights="akamaster", classifier_activation=None)
    _check_akamaster(model)
    _check_akamaster(_cifar(weights="akamaster:cifar10"))
    _check_akamaster(_cifar(weights="resnet20-12fca82f.th"))  # its published file name


def test_akamaster_conventions_are_checked_first(offline):
    """Contradicting the set is refused before anything is read or downloaded."""
    with pytest.raises(ValueError, match=r"shortcut='B' contradicts weights='akamaster'.*"
                                         r"needs shortcut='A'"):
        kr.CifarResNet(20, shortcut="B", weights="akamaster")
    with pytest.raises(ValueError, match=r"zero_pad_side='end' contradicts"):
        kr.CifarResNet(20, zero_pad_side="end", weights="akamaster")
    with pytest.raises(ValueError, match=r"classes must be 10 .* Received: classes=100"):
        kr.CifarResNet(20, classes=100, weights="akamaster")
    with pytest.raises(ValueError, match=r"not a published set for ResNet1001V2"):
        kr.CifarResNet(1001, variant="v2", weights="akamaster")
    with pytest.raises(OSError, match=r"resnet56-4bfd9763.th is not cached.*sha256 prefix 4bfd9763"):
        kr.CifarResNet(56, weights="akamaster")  # the cache is empty and the network refused


def test_akamaster_without_top_keeps_the_backbone():
    model = _cifar(weights=AKAMASTER, include_top=False, pooling="avg")
    assert model.output_shape == (None, 64) and weights.weight_set_of(model).name == "akamaster:cifar10"


# ------------------------------------------------------------------ chenyaofo, its layout

@pytest.mark.parametrize("data,classes", [("cifar10", 10), ("cifar100", 100)])
def test_chenyaofo_layout_gives_its_logits(data, classes, tmp_path, monkeypatch, offline):
    key = f"chenyaofo_{data}_resnet20"
    state = state_from_manifest(INFO["models"][key]["manifest"])
    assert "layer2.0.downsample.0.weight" in state and "fc.weight" in state  # option B, fc
    patched = cache_chenyaofo(data, offline, monkeypatch)
    with dtype_policy("fp32"):
        model = kr.get_model("ResNet20", weights=f"chenyaofo:{data}", classifier_activation=None)
    assert model.output_shape == (None, classes) and model.weight_set == patched
    assert weights.transform_of(model).mean == (published.CIFAR10_MEAN if classes == 10
                                                else published.CIFAR100_MEAN)
    assert model.get_layer("conv3_block1_0_conv").kernel.shape == (1, 1, 16, 32)
    rel = _rel(_logits(model), REF[f"{key}_logits"])
    assert rel < 1e-4, f"{key}: max relative logit difference {rel:.2e}"


# ------------------------------------------------------------------ the table

def test_list_weights_shows_the_cifar_sets(capsys):
    assert cli.main(["list", "--weights"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    ours = {(r[0], r[1]): r for r in rows if len(r) > 4}
    for depth, top1 in ((20, "91.73"), (32, "92.63"), (44, "93.10"), (56, "93.39"),
                        (110, "93.68"), (1202, "93.82")):  # akamaster's README: 100 - error
        row = ours[(f"ResNet{depth}", "akamaster:cifar10")]
        assert row[3] == "BSD-2-Clause" and row[4] == f"{top1}@32"
    assert ours[("ResNet56", "chenyaofo:cifar100")][4] == "72.63@32"  # chenyaofo's README
    assert "CIFAR-100, mean 0.507/0.4865/0.4409 std 0.2673/0.2564/0.2761" in out


# ------------------------------------------------------------------ osmr: pytorchcv and tf2cv

TF2CV = json.load(open(os.path.join(FIXTURES, "tf2cv_reference.json")))
TF2CV_REF = np.load(os.path.join(FIXTURES, "tf2cv_reference.npz"))
# fixture key -> our model: pytorchcv's / tf2cv's ResNet-20 (option B) on CIFAR-10, and their
# PreResNet bottleneck builder at depth 20 (preresnet164bn's / preresnet1001's layout) on CIFAR-100
OSMR = {"resnet20_cifar10": dict(depth=20, shortcut="B"),
        "preresnet20bn_cifar100": dict(depth=20, variant="v2", classes=100)}


def _zip_one(path, member_name):
    """osmr's published form: a zip holding the one file (deflated)."""
    import zipfile

    with zipfile.ZipFile(path + ".zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, member_name)
    return path + ".zip"


def _osmr_file(kind, key, folder):
    """The deterministic weights of fixture ``key`` in osmr's real ``kind`` layout, zipped."""
    from tests.torch_files import write_tf2cv_h5

    if kind == "pytorchcv":
        path = str(folder / f"{key}.pth")
        write_torch_zip(path, state_from_manifest(INFO["models"][f"pytorchcv_{key}"]["manifest"]))
    else:
        path = str(folder / f"{key}.tf2.h5")
        write_tf2cv_h5(path, TF2CV["models"][f"tf2cv_{key}"]["manifest"])
    return path, _zip_one(path, os.path.basename(path))


@pytest.mark.parametrize("kind", ["pytorchcv", "tf2cv"])
@pytest.mark.parametrize("key", sorted(OSMR))
def test_osmr_layouts_give_their_logits(kind, key, tmp_path):
    """pytorchcv's .pth / .pth.zip and tf2cv's .tf2.h5 / .tf2.h5.zip (tf.keras 2 HDF5 names)
    give the logits of osmr's own models; PreResNet's bottlenecks are our v2 unit for unit."""
    ref = (REF if kind == "pytorchcv" else TF2CV_REF)[f"{kind}_{key}_logits"]
    kwargs = {k: v for k, v in OSMR[key].items() if k != "depth"}
    for path in _osmr_file(kind, key, tmp_path):
        model = _cifar(OSMR[key]["depth"], weights=path, **kwargs)
        x = (IMAGES.astype(np.float32) / 255.0 - np.float32(published.CIFAR10_MEAN)) \
            / np.float32(published.CIFAR10_STD)
        rel = _rel(np.asarray(model(x, training=False)), ref)
        assert rel < 1e-4, f"{kind} {key} {os.path.basename(path)}: {rel:.2e}"


def _patch_set(monkeypatch, name, model, path, algorithm):
    ws = published.find_set(model, name)
    patched = published.dataclasses.replace(ws, hash_prefix=weights.file_hash(path, algorithm))
    monkeypatch.setattr(published, "SETS", tuple(patched if s is ws else s for s in published.SETS))
    return patched


@pytest.mark.parametrize("kind,name", [("pytorchcv", "osmr:cifar10"), ("tf2cv", "osmr-tf2cv:cifar10")])
def test_osmr_file_recognised_by_sha1_zipped_or_not(kind, name, tmp_path, monkeypatch):
    """osmr names files by the SHA-1 of the file inside the zip: the table's SHA-1 (set here
    to the test file's) recognises it under any name, zipped as published or extracted."""
    plain, zipped = _osmr_file(kind, "resnet20_cifar10", tmp_path)
    ws = _patch_set(monkeypatch, name, "ResNet20", plain, "sha1")
    for path in (plain, zipped):
        renamed = str(tmp_path / f"renamed{len(path)}.bin")
        shutil.copy(path, renamed)
        model = _cifar(weights=renamed)  # shortcut "B" comes from the set
        assert model.weight_set == ws and model.get_layer("conv3_block1_0_bn") is not None
        assert weights.transform_of(model).mean == published.CIFAR10_MEAN
        rel = _rel(_logits(model), (REF if kind == "pytorchcv" else TF2CV_REF)[
            f"{kind}_resnet20_cifar10_logits"])
        assert rel < 1e-4


def test_osmr_download_is_unzipped_checked_and_cached(tmp_path, monkeypatch, offline):
    """A named osmr set downloads its .pth.zip, keeps the checked .pth in the cache, and
    is used from there offline the next time."""
    import io

    folder = tmp_path / "src"
    folder.mkdir()
    plain, zipped = _osmr_file("pytorchcv", "resnet20_cifar10", folder)
    ws = _patch_set(monkeypatch, "osmr:cifar10", "ResNet20", plain, "sha1")
    served = []

    def serve(url, timeout):
        served.append(url)
        return io.BytesIO(open(zipped, "rb").read())

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    model = _cifar(weights="osmr")
    assert served == [ws.url] and ws.url.endswith("-9b0024ac.pth.zip")
    assert sorted(os.listdir(offline)) == ["resnet20_cifar10-0597-9b0024ac.pth"]
    assert weights.file_hash(str(offline / ws.file_name), "sha1") == ws.hash_prefix
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded again"))
    again = _cifar(weights="osmr:cifar10")
    np.testing.assert_array_equal(_logits(again), _logits(model))
    # a corrupt download is refused and leaves nothing in the cache
    os.remove(offline / ws.file_name)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"PK not a zip"))
    with pytest.raises(OSError, match=r"sha1 9b0024ac|not a zip"):
        _cifar(weights="osmr:cifar10")
    assert os.listdir(offline) == []


def test_osmr_preresnet_sets_need_v2():
    assert published.find_set("ResNet164V2", "osmr").file_name == \
        "preresnet164bn_cifar10-0364-429012d4.pth"  # imgclsmob's model_metainfos.csv
    with pytest.raises(ValueError, match=r"needs one of the named models.*depth=164, variant='v1'"):
        kr.CifarResNet(164, weights="osmr")  # v1 at depth 164: basic units, not osmr's


def test_export_takes_the_sets_normalisation():
    """akamaster normalises with ImageNet's mean / std on [0, 1]: the export's "torch" mode,
    not the CIFAR family's default "tf"; CIFAR statistics have no mode: the set's own mean /
    std (chenyaofo's README and training logs) are taken as they are."""
    from keras_resnet.export.options import resolve_options, weight_set_preprocessing

    model = _cifar(weights=AKAMASTER)
    options = resolve_options(model, class_names=[f"c{i}" for i in range(10)])
    assert (options.preprocessing, options.weights) == ("torch", "akamaster:cifar10")
    assert resolve_options(kr.CifarResNet(20), class_names=[f"c{i}" for i in range(10)]
                           ).preprocessing == "tf"
    assert weight_set_preprocessing(published.find_set("ResNet20", "chenyaofo:cifar100")) == {
        "mean": [0.507, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2761]}


def test_export_command_bakes_the_sets_normalisation(tmp_path):
    """``keras-resnet export --model ResNet20 --weights <akamaster's real file>`` serves
    akamaster's ImageNet mean / std ("torch"), not the CIFAR family's "tf" (the command used
    to pass the family's mode and so never asked the set)."""
    from keras_resnet import export
    from keras_resnet.export import cli as export_cli

    export_dir = str(tmp_path / "resnet20")
    args = ["--model", "ResNet20", "--weights", AKAMASTER, "--export-dir", export_dir,
            "--version", "1", "--no-fold-bn"]
    assert export_cli.cli_main("export", args) == 0
    meta = export.saved_model_metadata(os.path.join(export_dir, "1"))
    assert (meta["preprocessing"], meta["weights"]) == ("torch", "akamaster:cifar10")


def test_export_command_serves_chenyaofos_own_probabilities(tmp_path, monkeypatch, offline):
    """``keras-resnet export --model ResNet20 --weights chenyaofo:cifar10`` bakes chenyaofo's
    CIFAR-10 mean / std, which no mode has (the command refused it before): the SavedModel's
    ``predict_pixels`` on raw 0..255 pixels gives the softmax of the logits chenyaofo's own
    model code gave on the same images, normalised as its eval transform does
    (tools/make_cifar_fixtures.py)."""
    import tensorflow as tf

    from keras_resnet import export
    from keras_resnet.export import cli as export_cli

    cache_chenyaofo("cifar10", offline, monkeypatch)
    export_dir = str(tmp_path / "resnet20")
    args = ["--model", "ResNet20", "--weights", "chenyaofo:cifar10", "--export-dir", export_dir,
            "--version", "1", "--no-fold-bn", "--precision", "fp32", "--no-warmup"]
    assert export_cli.cli_main("export", args) == 0
    meta = export.saved_model_metadata(os.path.join(export_dir, "1"))
    assert meta["preprocessing"] == {"mean": list(published.CIFAR10_MEAN), "std": list(published.CIFAR10_STD)}
    served = tf.saved_model.load(os.path.join(export_dir, "1")).signatures["predict_pixels"]
    probabilities = served(pixels=tf.constant(IMAGES.astype(np.float32)))["probabilities"].numpy()
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(REF["chenyaofo_cifar10_resnet20_logits"]))
    np.testing.assert_allclose(probabilities, expected, atol=2e-5)


def test_predict_command_with_a_mean_std_flag_gives_chenyaofos_probabilities(
        tmp_path, monkeypatch, offline, capsys):
    """``keras-resnet predict --model ResNet20 --weights chenyaofo:cifar10 --preprocessing
    mean=R,G,B,std=R,G,B`` (CIFAR-10's, written out as chenyaofo's README gives them): the
    top-3 scores are those of the softmax of chenyaofo's own logits on the same images."""
    from PIL import Image

    cache_chenyaofo("cifar10", offline, monkeypatch)
    files = []
    for i in (0, 6):  # a photo and a noise image
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(IMAGES[i]).save(files[-1])
    flag = "mean=0.4914,0.4822,0.4465,std=0.2023,0.1994,0.201"
    assert cli.main(["predict", "--model", "ResNet20", "--weights", "chenyaofo:cifar10",
                     "--preprocessing", flag, "--top-k", "3", "--json", *files]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(REF["chenyaofo_cifar10_resnet20_logits"]))
    for result, i in zip(results, (0, 6)):
        best = np.argsort(expected[i])[::-1][:3]
        np.testing.assert_allclose([p["score"] for p in result["predictions"]], expected[i][best], atol=1e-4)
