"""Checkpoints as users have them: any name, legacy pickles, containers, prefixes, pickled
models, and files that lie about their sizes.

The tensors are those of ``tests/torch_files.tensor_for`` (torchvision ResNet-18's names and
shapes, whose logits torchvision computed in ``fixtures/weight_reference.npz``), written
here in ``torch.save``'s real layouts: the zip layout, and the legacy layout of PyTorch
0.3 / 0.4 exactly as akamaster/pytorch_resnet_cifar10's published ``resnet20-12fca82f.th``
lays it out (``_rebuild_tensor`` v1, ``{"best_prec1": ..., "state_dict": ...}``, every name
under ``module.``). Loaded weights must equal the written tensors bit for bit, and the
loaded model must give torchvision's logits.
"""

from collections import OrderedDict

import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import weights
from keras_resnet.utils import dtype_policy
from keras_resnet.weights import checkpoint
from tests.test_weight_conversion import INFO, REF, SIZE, X, _rel
from tests.torch_files import state_from_manifest, tensor_for, write_torch_legacy, write_torch_zip


def _state(prefix=""):
    state = state_from_manifest(INFO["models"]["tv_resnet18"]["manifest"])
    return OrderedDict((prefix + k, v) for k, v in state.items())


@pytest.fixture(scope="module")
def resnet18():
    """One ResNet-18 (v1.5, torchvision's names) whose weights each test overwrites."""
    with dtype_policy("fp32"):
        return kr.get_model("ResNet18V1_5", input_shape=(SIZE, SIZE, 3), classifier_activation=None,
                            kernel_initializer="zeros")


def _assert_loaded(model, state):
    """The model's variables are the state's tensors, bit for bit (layouts converted)."""
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(),
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("conv5_block2_2_bn").moving_variance.numpy(),
                                  state["layer4.1.bn2.running_var"])
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(), state["fc.weight"].T)


def test_akamaster_layout_legacy_v1_loads_with_torchvision_logits(tmp_path, resnet18):
    """Legacy pickle, _rebuild_tensor v1, under "state_dict" beside best_prec1, "module."
    names: akamaster's layout. The logits are torchvision's for the same tensors."""
    path = str(tmp_path / "resnet18-0123abcd.th")
    write_torch_legacy(path, {"best_prec1": 91.78, "state_dict": _state("module.")})
    assert checkpoint.file_format(path) == "torch legacy"
    report = weights.load_checkpoint(resnet18, path)
    assert report["prefix"] == "module."
    assert report["container"] == "state_dict" and report["ignored_entries"] == ["best_prec1"]
    assert report["tensors"] == 102
    _assert_loaded(resnet18, _state())
    assert _rel(np.asarray(resnet18(X, training=False)), REF["tv_resnet18_logits"]) < 1e-4


_OPTIMIZER = {"state": {0: {"momentum_buffer": np.ones((2, 2), np.float32)}},
              "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]}


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("key", checkpoint.CONTAINER_KEYS)
def test_each_container_key(key, layout, tmp_path, resnet18):
    """Training scripts' checkpoints: the state dict under one key, beside an epoch, an
    optimizer (tensors of its own) and a score; those are ignored and named."""
    path = str(tmp_path / "checkpoint.pth.tar")
    state = _state()
    obj = {"epoch": 90, "arch": "resnet18", key: state, "optimizer": _OPTIMIZER, "best_acc1": 69.7}
    (write_torch_zip if layout == "zip" else write_torch_legacy)(path, obj)
    report = weights.load_checkpoint(resnet18, path)
    assert report["container"] == key and report["prefix"] == ""
    assert report["ignored_entries"] == ["epoch", "arch", "optimizer", "best_acc1"]
    _assert_loaded(resnet18, state)


def test_nested_container_and_state_dict_with_extras(tmp_path, resnet18):
    path = str(tmp_path / "last.ckpt")
    write_torch_zip(path, {"model": {"state_dict": _state("module."), "step": 10}, "epoch": 1})
    report = weights.load_checkpoint(resnet18, path)
    assert report["container"] == "model.state_dict"
    assert report["ignored_entries"] == ["epoch", "model.step"]
    _assert_loaded(resnet18, _state())
    # the first of CONTAINER_KEYS wins over an EMA copy, which is named as ignored
    ema = OrderedDict((k, np.asarray(v + 1)) for k, v in _state().items())
    write_torch_zip(path, {"state_dict_ema": ema, "state_dict": _state()})
    report = weights.load_checkpoint(resnet18, path)
    assert report["container"] == "state_dict" and report["ignored_entries"] == ["state_dict_ema"]
    _assert_loaded(resnet18, _state())


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "backbone.",
                                    "module.backbone.", "module._orig_mod."])
def test_each_shared_prefix_is_stripped(prefix, tmp_path, resnet18):
    """DataParallel, torch.compile, Lightning / wrapper modules, and nested ones."""
    path = str(tmp_path / "weights.pt")
    write_torch_zip(path, _state(prefix))
    report = weights.load_checkpoint(resnet18, path)
    assert report["prefix"] == prefix and report["container"] is None
    _assert_loaded(resnet18, _state())


def _renamed(name):
    """Another library's names for the same tensors: none equals a torchvision name."""
    for a, b in (("conv", "c"), ("bn", "norm"), ("layer", "stage"), ("fc", "head")):
        name = name.replace(a, b)
    return name


def test_prefix_that_leaves_no_match_names_it_and_the_expected_names(tmp_path, resnet18):
    path = str(tmp_path / "weights.pth")
    write_torch_zip(path, OrderedDict((_renamed(k), v) for k, v in _state("encoder.").items()))
    with pytest.raises(ValueError) as e:
        weights.load_checkpoint(resnet18, path)
    message = str(e.value)
    assert "'encoder.'" in message and "'encoder.c1.weight'" in message
    assert "expects names like ['conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean']" in message


def test_prefix_is_not_stripped_from_names_that_match_unstripped(tmp_path, resnet18):
    """A state dict whose every name starts with 'layer'... is no prefix (prefixes end at a
    dot); names that already match are taken as they are."""
    path = str(tmp_path / "weights.pth")
    write_torch_zip(path, _state())
    assert weights.load_checkpoint(resnet18, path)["prefix"] == ""


@pytest.mark.parametrize("name", ["resnet18.th", "checkpoint.pth.tar", "resnet18.pt",
                                  "pytorch_model.bin", "resnet18", "weights.data"])
def test_any_name_is_recognised_by_content(name, tmp_path):
    small = OrderedDict(list(_state().items())[:12])
    legacy = str(tmp_path / f"legacy_{name}")
    write_torch_legacy(legacy, {"state_dict": small})
    zipped = str(tmp_path / f"zip_{name}")
    write_torch_zip(zipped, small)
    assert checkpoint.file_format(legacy) == "torch legacy"
    assert checkpoint.file_format(zipped) == "torch zip"
    for path in (legacy, zipped):
        assert checkpoint.is_checkpoint(path)
        state = checkpoint.read_checkpoint(path)
        assert list(state) == list(small)
        for k, v in small.items():
            assert state[k].dtype == v.dtype
            np.testing.assert_array_equal(state[k], v)


def test_weights_argument_takes_any_name(tmp_path):
    path = str(tmp_path / "resnet18.pth.tar")
    write_torch_legacy(path, {"epoch": 3, "state_dict": _state("module.")})
    with dtype_policy("fp32"):
        model = kr.get_model("ResNet18V1_5", input_shape=(SIZE, SIZE, 3),
                             classifier_activation=None, weights=path)
    assert _rel(np.asarray(model(X, training=False)), REF["tv_resnet18_logits"]) < 1e-4


def test_unknown_files_name_every_accepted_format(tmp_path):
    junk = tmp_path / "model.th"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    for call in (lambda: kr.CifarResNet(20, weights=str(junk)),
                 lambda: kr.get_model("ResNet18V1_5", weights=str(junk)),
                 lambda: checkpoint.read_checkpoint(str(junk))):
        with pytest.raises(ValueError) as e:
            call()
        message = str(e.value)
        for fmt in (".weights.h5", ".keras", "torch.save", "legacy", ".safetensors", ".pth.zip",
                    "keras-hub preset"):
            assert fmt in message, (fmt, message)
        assert "model.th" in message


def _cifar_state(model):
    """Tensors in torch layout for a CIFAR ResNet with option-B shortcuts, under the names
    torchvision-style CIFAR code uses (conv1, layer1.0.conv1, layer2.0.downsample.0, fc)."""
    import keras

    from keras_resnet.weights import convert

    shapes = OrderedDict()
    for layer in model.layers:
        if not layer.weights:
            continue
        base = convert.torch_prefix(layer.name, avg_down=False)
        if isinstance(layer, keras.layers.BatchNormalization):
            for role, var in zip(("weight", "bias", "running_mean", "running_var"), layer.weights):
                shapes[f"{base}.{role}"] = tuple(var.shape)
        elif isinstance(layer, keras.layers.Dense):
            shapes[f"{base}.weight"] = tuple(layer.kernel.shape)[::-1]
            shapes[f"{base}.bias"] = tuple(layer.bias.shape)
        else:  # (*spatial, in, out) -> (out, in, *spatial)
            k = tuple(layer.kernel.shape)
            shapes[f"{base}.weight"] = (k[-1], k[-2]) + k[:-2]
    return OrderedDict((name, tensor_for(name, shape)) for name, shape in shapes.items())


def test_cifar_and_1d_models_take_checkpoints(tmp_path):
    """CifarResNet and 1D models reach the checkpoint path: a .th file whose names fit
    loads, bit for bit; one whose names do not is a clear error."""
    with dtype_policy("fp32"):
        model = kr.CifarResNet(20, shortcut="B")
        state = _cifar_state(model)
        path = str(tmp_path / "resnet20.th")
        write_torch_legacy(path, {"best_prec1": 91.0, "state_dict": OrderedDict(
            ("module." + k, v) for k, v in state.items())})
        loaded = kr.CifarResNet(20, shortcut="B", weights=path)
        np.testing.assert_array_equal(loaded.get_layer("conv3_block1_0_conv").kernel.numpy(),
                                      state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(loaded.get_layer("predictions").kernel.numpy(), state["fc.weight"].T)
        other = str(tmp_path / "other.th")
        write_torch_legacy(other, {"net": OrderedDict(("features." + _renamed(k), v)
                                                      for k, v in state.items())})
        with pytest.raises(ValueError, match=r"'features\.'.*expects names like \['conv1.weight'"):
            kr.CifarResNet(20, shortcut="B", weights=other)
        signal = kr.ResNet(18, variant="v1.5", dims=1, input_shape=(64, 3), classes=5)
        state1d = _cifar_state(signal)
        path1d = str(tmp_path / "signal.pt")
        write_torch_zip(path1d, state1d)
        loaded1d = kr.ResNet(18, variant="v1.5", dims=1, input_shape=(64, 3), classes=5, weights=path1d)
        np.testing.assert_array_equal(loaded1d.get_layer("conv2_block1_1_conv").kernel.numpy(),
                                      state1d["layer1.0.conv1.weight"].transpose(2, 1, 0))


def test_convert_command_prints_the_load_report(tmp_path, capsys):
    from keras_resnet import cli

    path = str(tmp_path / "resnet18-0123abcd.th")
    write_torch_legacy(path, {"best_prec1": 91.78, "epoch": 200, "state_dict": _state("module.")})
    out = str(tmp_path / "r18.weights.h5")
    assert cli.main(["convert", path, "--model", "ResNet18V1_5", "--output", out, "--no-probe"]) == 0
    printed = capsys.readouterr().out
    assert "matched 102 tensors to 102 variables" in printed
    assert "state dict under 'state_dict'; ignored beside it: best_prec1, epoch" in printed
    assert "stripped the prefix 'module.'" in printed
