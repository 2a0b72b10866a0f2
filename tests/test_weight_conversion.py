"""torchvision / timm checkpoints and keras-hub presets through ``weights=``, against the
real libraries.

``tools/make_weight_fixtures.py`` (run with torch, torchvision and timm) built each
reference model with the deterministic tensors of ``tests/torch_files.tensor_for`` and
stored its logits on a fixed 64x64 batch (library versions in the JSON). Here the same
tensors are regenerated without torch, written in the real file formats (``.pth`` in
``torch.save``'s zip layout, ``.bin``, ``.safetensors`` via ``safetensors.numpy``) and
loaded through ``weights=``; the logits must agree within 1e-4 relative. Two tiny files
written by ``torch.save`` itself (zip and legacy layout) pin the reader to torch's writer.
``tools/make_keras_hub_fixtures.py`` did the same with keras-hub ``ResNetBackbone`` presets
(their real ``config.json`` and ``model.weights.h5`` layout are committed, the values
regenerated here).
"""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_resnet as kr
from keras_resnet import weights
from keras_resnet.utils import dtype_policy
from keras_resnet.weights import published, torch_pickle
from keras_resnet.weights.checkpoint import read_checkpoint
from tests.torch_files import (
    crafted_pickle,
    state_from_manifest,
    tensor_for,
    write_crafted_legacy,
    write_crafted_zip,
    write_keras_hub_weights,
    write_torch_zip,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
INFO = json.load(open(os.path.join(FIXTURES, "weight_reference.json")))
REF = np.load(os.path.join(FIXTURES, "weight_reference.npz"))
X = REF["input_nchw"].transpose(0, 2, 3, 1)
SIZE = INFO["image_size"]
# the format each publisher ships: torchvision .pth, timm model.safetensors / pytorch_model.bin
FORMATS = {"tv_resnet18": "pth", "tv_resnet50": "pth", "tv_resnext50_32x4d": "pth",
           "tv_wide_resnet50_2": "safetensors", "timm_resnet26": "bin",
           "timm_resnet26d": "safetensors", "timm_resnet50d": "safetensors",
           "timm_seresnet50": "safetensors"}


def _state(key):
    return state_from_manifest(INFO["models"][key]["manifest"])


def _write(state, path):
    if path.endswith(".safetensors"):
        save_file(state, path)
    else:
        write_torch_zip(path, state)
    return path


def _logits(model):
    return np.asarray(model(X, training=False))


def _rel(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _build(name, **kwargs):
    """A logits model at the fixtures' size; kernels start at zero (every one is overwritten,
    and a random initialisation of 69M parameters only costs time)."""
    kwargs.setdefault("input_shape", (SIZE, SIZE, 3))
    with dtype_policy("fp32"):  # numbers are compared: float32 whatever the global policy
        return kr.get_model(name, classifier_activation=None, kernel_initializer="zeros", **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(FORMATS))
def test_checkpoint_logits_match_reference(key, tmp_path):
    """v1.5 basic / bottleneck, ResNeXt, wide (torchvision); v1.5, v1d, SE (timm)."""
    info = INFO["models"][key]
    path = _write(_state(key), str(tmp_path / f"{key}.{FORMATS[key]}"))
    model = _build(info["model"], weights=path)
    rel = _rel(_logits(model), REF[f"{key}_logits"])
    assert rel < 1e-4, f"{key}: max relative logit difference {rel:.2e}"


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_reader_matches_real_torch_save(layout):
    """tiny_state_*.pth were written by torch.save itself (strided and offset views included)."""
    state = torch_pickle.load_torch_file(os.path.join(FIXTURES, f"tiny_state_{layout}.pth"))
    manifest = {n: (s, d) for n, s, d in INFO["models"]["tv_resnet18"]["manifest"]}
    for name in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                 "fc.bias", "bn1.num_batches_tracked"):
        expected = tensor_for(name, *manifest[name])
        assert state[name].shape == expected.shape and state[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(state[name], expected)
    fc = tensor_for("fc.weight", *manifest["fc.weight"])
    np.testing.assert_array_equal(state["fc.weight.T"], fc[:8, :16].T)
    np.testing.assert_array_equal(state["fc.weight.rows"], fc[3:5, :16])


def test_crafted_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    evil = str(tmp_path / "evil.pth")
    write_crafted_zip(evil, crafted_pickle("os", "system", f"touch {marker}"))
    with pytest.raises(ValueError, match="os.system"):
        read_checkpoint(evil)
    legacy = tmp_path / "evil.bin"  # the legacy layout's object pickle
    write_crafted_legacy(str(legacy), crafted_pickle("builtins", "exec", f"open('{marker}', 'w')"))
    with pytest.raises(ValueError, match="builtins.exec"):
        read_checkpoint(str(legacy))
    bare = tmp_path / "bare.pth"  # a pickle that is no torch.save file: not read at all
    bare.write_bytes(crafted_pickle("builtins", "exec", f"open('{marker}', 'w')"))
    with pytest.raises(ValueError, match="torch.save checkpoint"):
        read_checkpoint(str(bare))
    with pytest.raises(ValueError, match="os.system"):
        kr.get_model("ResNet18V1_5", weights=evil)
    assert not marker.exists()


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    return _write(_state("tv_resnet18"), str(tmp_path_factory.mktemp("ckpt") / "resnet18.pth"))


def test_head_left_out_without_top_and_on_request(resnet18_pth):
    """include_top=False skips fc; pooled features times fc give the reference logits."""
    state = _state("tv_resnet18")
    headless = _build("ResNet18V1_5", include_top=False, pooling="avg", weights=resnet18_pth)
    logits = _logits(headless) @ state["fc.weight"].T + state["fc.bias"]
    assert _rel(logits, REF["tv_resnet18_logits"]) < 1e-4
    with pytest.raises(ValueError, match="classes must be 1000.*skip_classifier"):
        _build("ResNet18V1_5", classes=10, weights=resnet18_pth)
    ten = _build("ResNet18V1_5", classes=10)
    report = weights.load_checkpoint(ten, resnet18_pth, skip_classifier=True)
    assert report["ignored"] == 2 + 20  # fc.weight, fc.bias; 20 num_batches_tracked
    np.testing.assert_allclose(ten.get_layer("conv1_conv").kernel.numpy(),
                               state["conv1.weight"].transpose(2, 3, 1, 0))


def test_mismatches_name_tensor_variable_and_shapes(tmp_path, resnet18_pth):
    state = _state("tv_resnet18")
    with pytest.raises(ValueError, match=r"no tensor 'conv1.0.weight'.*'conv1_1_conv/kernel' \(shape \(3, 3, 3, 32\)\)"):
        _build("ResNet18D", weights=resnet18_pth)  # the deep stem's first conv
    with pytest.raises(ValueError, match=r"'conv1.weight' has shape \(64, 3, 7, 7\).*needs \(7, 7, 3, 32\)"):
        kr.ResNet(18, variant="v1.5", width_multiplier=0.5, input_shape=(SIZE, SIZE, 3),
                  weights=resnet18_pth)  # refused on the shapes: no numbers compared
    extra = _write({**state, "layer5.0.conv1.weight": np.zeros((2, 2, 1, 1), np.float32)},
                   str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match=r"'layer5.0.conv1.weight' \(shape \(2, 2, 1, 1\)\) matches no variable"):
        _build("ResNet18V1_5", weights=extra)
    missing = _write({k: v for k, v in state.items() if k != "layer2.0.bn1.running_var"},
                     str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match=r"no tensor 'layer2.0.bn1.running_var'.*\(128,\)"):
        _build("ResNet18V1_5", weights=missing)


def _cache_set(monkeypatch, tmp_path, set_name, model, state):
    """Put ``state`` in the cache under the set's file name, its hash patched into the table."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    ws = published.find_set(model, set_name)
    path = _write(state, str(tmp_path / "models" / ws.file_name))
    patched = published.dataclasses.replace(ws, hash_prefix=weights.file_hash(path)[:8])
    monkeypatch.setattr(published, "SETS", tuple(patched if s is ws else s for s in published.SETS))
    return patched


def test_named_set_loads_from_cache_and_carries_its_transform(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "models")
    _cache_set(monkeypatch, tmp_path, "torchvision:IMAGENET1K_V1", "ResNet18V1_5", _state("tv_resnet18"))
    model = _build("ResNet18V1_5", weights="torchvision")
    assert _rel(_logits(model), REF["tv_resnet18_logits"]) < 1e-4
    t = weights.transform_of(model)
    assert (t.resize, t.crop, t.interpolation) == (256, 224, "bilinear")
    assert weights.weight_set_of(model).name == "torchvision:IMAGENET1K_V1"
    # the export takes it: Resize(256) + CenterCrop(224), recorded in the metadata
    from keras_resnet.export import EvalTransform
    from keras_resnet.export.options import resolve_options

    options = resolve_options(model, class_names=[f"c{i}" for i in range(1000)])
    assert options.transform == EvalTransform(crop_fraction=224 / 256, interpolation="bilinear",
                                              resize="shorter_side")
    assert options.weights == "torchvision:IMAGENET1K_V1"


def test_published_transforms_as_the_publishers_state():
    v2 = weights.eval_transform("torchvision:IMAGENET1K_V2", "ResNet50V1_5")
    assert (v2.resize, v2.crop, v2.interpolation) == (232, 224, "bilinear")  # torchvision V2
    a1 = weights.eval_transform("timm:resnet50.a1_in1k", "ResNet50V1_5")
    assert (a1.resize, a1.crop, a1.interpolation) == (235, 224, "bicubic")  # crop_pct 0.95
    assert weights.find_set("ResNet50V1_5", "torchvision").name == "torchvision:IMAGENET1K_V2"
    with pytest.raises(ValueError, match="sets for ResNet18V1_5.*torchvision:IMAGENET1K_V1"):
        kr.get_model("ResNet18V1_5", weights="timm:resnet50.a1_in1k")


def test_offline_download_names_url_hash_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    ws = published.find_set("ResNet50V1_5", "timm:resnet50.a1_in1k")
    with pytest.raises(OSError) as e:
        weights.fetch(ws.file_name, "http://127.0.0.1:9/" + ws.file_name, ws.hash_prefix)
    message = str(e.value)
    assert "http://127.0.0.1:9/" + ws.file_name in message
    assert f"sha256 prefix {ws.hash_prefix}" in message
    assert str(tmp_path / "models" / ws.file_name) in message
    assert os.listdir(tmp_path / "models") == []  # nothing half-written


def test_convert_command_writes_a_keras_weights_file(tmp_path, resnet18_pth, capsys):
    from keras_resnet import cli

    out = str(tmp_path / "r18.weights.h5")
    assert cli.main(["convert", resnet18_pth, "--model", "ResNet18V1_5", "--output", out]) == 0
    printed = capsys.readouterr().out
    assert "matched 102 tensors to 102 variables" in printed and "wrote" in printed
    model = _build("ResNet18V1_5")
    model.load_weights(out)
    assert _rel(_logits(model), REF["tv_resnet18_logits"]) < 1e-4
    assert cli.main(["convert", resnet18_pth, "--model", "ResNet18V1_5", "--output", "x.h5"]) == 2
    assert not os.path.exists("x.h5")


def test_list_weights_shows_sets_sources_licenses_top1(capsys):
    from keras_resnet import cli

    assert cli.main(["list", "--weights"]) == 0
    out = capsys.readouterr().out
    assert "torchvision:IMAGENET1K_V2" in out and "80.86" in out and "BSD-3-Clause" in out
    assert "timm:resnet50d.ra2_in1k" in out and "Apache-2.0" in out


HUB = json.load(open(os.path.join(FIXTURES, "keras_hub_reference.json")))
HUB_REF = np.load(os.path.join(FIXTURES, "keras_hub_reference.npz"))


def _hub_preset(key, folder):
    os.makedirs(folder)
    with open(os.path.join(FIXTURES, key, "config.json")) as src, \
            open(os.path.join(folder, "config.json"), "w") as dst:
        dst.write(src.read())
    write_keras_hub_weights(os.path.join(folder, "model.weights.h5"), HUB["models"][key]["layout"])
    return folder


@pytest.mark.parametrize("key", sorted(HUB["models"]))
def test_keras_hub_preset_features_match_reference(key, tmp_path):
    """keras-hub v1 basic (7x7 stem) -> ResNet18V1_5; _vd bottleneck (deep stem) -> ResNet26D."""
    preset = _hub_preset(key, str(tmp_path / key))
    model = _build(HUB["models"][key]["model"], include_top=False, weights=preset)
    assert _rel(_logits(model), HUB_REF[f"{key}_features"]) < 1e-4
    with pytest.raises(ValueError, match="include_top must be False"):
        _build(HUB["models"][key]["model"], weights=preset)
    with pytest.raises(ValueError, match="keras-hub preset of"):
        _build("ResNet50V1_5", include_top=False, weights=preset)
    if key == "keras_hub_resnet26_vd":  # the command too: a backbone-only weights file
        from keras_resnet import cli

        out = str(tmp_path / "r26d.weights.h5")
        assert cli.main(["convert", preset, "--model", "ResNet26D", "--output", out,
                         "--skip-classifier"]) == 0
        model.load_weights(out)
        assert _rel(_logits(model), HUB_REF[f"{key}_features"]) < 1e-4


def test_published_file_recognised_by_hash_under_any_name(tmp_path, monkeypatch):
    """A torchvision file downloaded by hand and renamed loads as its set: the same tensors,
    and the set's eval transform on the model (the table's hash set to the test file's)."""
    path = _write(_state("tv_resnet18"), str(tmp_path / "my_download.bin"))
    ws = published.find_set("ResNet18V1_5", "torchvision:IMAGENET1K_V1")
    patched = published.dataclasses.replace(ws, hash_prefix=weights.file_hash(path)[:8])
    monkeypatch.setattr(published, "SETS", tuple(patched if s is ws else s for s in published.SETS))
    model = _build("ResNet18V1_5", weights=path)
    assert weights.weight_set_of(model) == patched and model.weight_set is patched
    assert weights.transform_of(model).resize == 256
    assert _rel(_logits(model), REF["tv_resnet18_logits"]) < 1e-4
