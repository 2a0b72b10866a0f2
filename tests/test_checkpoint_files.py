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

import json
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import weights
from keras_resnet.utils import dtype_policy
from keras_resnet.weights import checkpoint
from tests.test_weight_conversion import INFO, REF, SIZE, X, _rel
from tests.torch_files import (
    MEASURE_READ,
    state_from_manifest,
    tensor_for,
    write_torch_legacy,
    write_torch_zip,
)


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


# ------------------------------------------------------- real torch files, pickled models

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
REAL = json.load(open(os.path.join(FIXTURES, "torch_checkpoint_files.json")))


def _stem_tensor(name):
    """The value tools/make_checkpoint_fixtures.py gave tensor ``name`` (bn1: 64 channels,
    fc: 10 x 4)."""
    shapes = {"bn1.weight": (64,), "bn1.bias": (64,), "bn1.running_mean": (64,),
              "bn1.running_var": (64,), "bn1.num_batches_tracked": (), "fc.weight": (10, 4),
              "fc.bias": (10,)}
    return tensor_for(name, shapes[name], "int64" if name.endswith("tracked") else "float32")


@pytest.mark.parametrize("name,prefix,container,ignored", [
    ("torch_checkpoint.pth.tar", "module.", "state_dict", ["epoch", "arch", "best_acc1", "optimizer", "args"]),
    ("torch_compiled.pt", "_orig_mod.", None, []),
])
def test_real_torch_training_checkpoints(name, prefix, container, ignored):
    """Written by torch itself: the ImageNet example's checkpoint (legacy layout, DataParallel
    names, a real SGD state, a 0-d tensor score, an argparse.Namespace) and a torch.compile
    state dict. The tensors are read bit for bit and ported under their prefix."""
    import keras

    from keras_resnet.weights import convert

    opened = checkpoint.open_checkpoint(os.path.join(FIXTURES, name))
    assert sorted(opened.state) == REAL["names"][name]
    assert opened.container == container and list(opened.ignored_entries) == ignored
    for key, value in opened.state.items():
        expected = _stem_tensor(key[len(prefix):])
        assert value.dtype == expected.dtype
        np.testing.assert_array_equal(value, expected)
    bn, dense = keras.layers.BatchNormalization(), keras.layers.Dense(10)
    bn.build((None, 64))
    dense.build((None, 4))
    porter = convert.Porter(opened.state, name)
    convert.port_batch_norm(porter, bn, "bn1")
    convert.port_dense(porter, dense, "fc")
    porter.check_all_used()
    porter.apply()
    assert porter.prefix == prefix
    np.testing.assert_array_equal(bn.moving_variance.numpy(), _stem_tensor("bn1.running_var"))
    np.testing.assert_array_equal(dense.kernel.numpy(), _stem_tensor("fc.weight").T)


@pytest.mark.parametrize("name", ["torch_module.pth", "torch_module_legacy.pth"])
def test_real_pickled_module_is_refused_with_the_fix(name):
    """torch.save(model) of a whole nn.Module (written by torch, class __main__.Stem)."""
    with pytest.raises(ValueError, match=r"__main__\.Stem.*torch\.save\(model\.state_dict\(\), path\)"):
        checkpoint.read_checkpoint(os.path.join(FIXTURES, name))


_SIDE_EFFECT_MODULE = '''
import os
open(os.environ["CKPT_TEST_MARKER"], "w").close()
os.environ["CKPT_TEST_IMPORTED"] = "1"


class Net:
    def __init__(self, *args):
        open(os.environ["CKPT_TEST_MARKER"], "w").close()

    def __setstate__(self, state):
        open(os.environ["CKPT_TEST_MARKER"], "w").close()


def run(*args):
    open(os.environ["CKPT_TEST_MARKER"], "w").close()
'''


# getenv(3): os.putenv changes the C environment, which os.environ does not see
_C_GETENV = ("import ctypes; libc = ctypes.CDLL(None); libc.getenv.restype = ctypes.c_char_p; "
             "c_getenv = libc.getenv; ")


def _payloads(marker):
    """Pickles that run code when loaded: a model class of a module whose import has side
    effects (as torch.save(model) names ``__main__.Net``), a function of it, os.putenv,
    builtins.exec and posix.system."""
    from tests.torch_files import _global, _str, crafted_pickle

    model = b"\x80\x02" + _global("ckpt_side_effect", "Net") + b")\x81}b."  # NEWOBJ + BUILD
    return {
        "model class": model,
        "module function": crafted_pickle("ckpt_side_effect", "run", "x"),
        "os.putenv": b"\x80\x02" + _global("os", "putenv") + b"(" + _str("CKPT_TEST_PUTENV")
                     + _str("1") + b"tR.",
        "builtins.exec": crafted_pickle("builtins", "exec", f"open({str(marker)!r}, 'w').close()"),
        "posix.system": crafted_pickle("posix", "system", f"touch {marker}"),
    }


def test_nothing_from_a_pickle_runs(tmp_path, monkeypatch):
    """Each payload really runs under pickle.loads (checked in a child process); through our
    reader, in both layouts, it is a ValueError and nothing happened: no file, no
    environment variable, the module never imported."""
    import subprocess
    import sys

    from tests.torch_files import write_crafted_legacy, write_crafted_zip

    marker = tmp_path / "ran"
    (tmp_path / "ckpt_side_effect.py").write_text(_SIDE_EFFECT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CKPT_TEST_MARKER", str(marker))
    payloads = _payloads(marker)
    for what, payload in payloads.items():  # the control: plain pickle runs each of them
        env = dict(os.environ, PYTHONPATH=str(tmp_path))
        child = subprocess.run(
            [sys.executable, "-c", "import os, pickle, sys; pickle.loads(sys.stdin.buffer.read()); "
             "print(os.environ.get('CKPT_TEST_PUTENV') or os.getenv('CKPT_TEST_IMPORTED') or '')"],
            input=payload, env=env, capture_output=True)
        ran = marker.exists() or b"1" in child.stdout
        if what == "os.putenv":  # putenv changes the C environment only: read it back there
            ran = subprocess.run([sys.executable, "-c", "import pickle, sys; "
                                  "pickle.loads(sys.stdin.buffer.read()); " + _C_GETENV
                                  + "print(c_getenv(b'CKPT_TEST_PUTENV'))"],
                                 input=payload, env=env, capture_output=True).stdout.strip() == b"b'1'"
        assert ran, f"control: {what} did not run under pickle.loads"
        if marker.exists():
            marker.unlink()
    for what, payload in payloads.items():
        for layout, write in (("zip", write_crafted_zip), ("legacy", write_crafted_legacy)):
            path = str(tmp_path / f"evil_{layout}.pth")
            write(path, payload)
            with pytest.raises(ValueError, match="refus"):
                checkpoint.read_checkpoint(path)
            with pytest.raises(ValueError):
                kr.CifarResNet(20, weights=path)
    assert not marker.exists()
    assert "ckpt_side_effect" not in sys.modules
    assert "CKPT_TEST_IMPORTED" not in os.environ and "CKPT_TEST_PUTENV" not in os.environ
    scope = {}
    exec(_C_GETENV, scope)
    assert scope["c_getenv"](b"CKPT_TEST_PUTENV") is None
    # a pickled model object names the fix
    write_crafted_zip(str(tmp_path / "model.pth"), payloads["model class"])
    with pytest.raises(ValueError, match=r"ckpt_side_effect\.Net.*model\.state_dict\(\)"):
        checkpoint.read_checkpoint(str(tmp_path / "model.pth"))


# ------------------------------------------------------------------------ bounded memory

def _measure(path):
    """Read ``path`` in a fresh interpreter: (peak RSS growth in bytes, seconds, error,
    tensor bytes). The growth is an upper bound (the peak also holds the imports')."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", MEASURE_READ, path], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=root), check=True).stdout
    return json.loads(out)


def test_zip_bomb_is_refused_in_seconds_with_bounded_memory(tmp_path):
    """A 3 MB .pth whose first storage record inflates to 3 GiB of zeros (a valid deflate
    stream with the right CRC; the rest a genuine state dict): the declared sizes disagree,
    or (when the pickle declares 3 GiB too) the record inflates over 16x. Nothing is read."""
    from tests.torch_files import write_torch_bomb

    state = OrderedDict(list(_state().items())[:8])
    for declared in (False, True):
        path = str(tmp_path / f"bomb_{declared}.pth")
        write_torch_bomb(path, state, declared=declared)
        assert os.path.getsize(path) < 4 << 20
        assert zipfile.ZipFile(path).getinfo("archive/data/0").file_size == 3 << 30
        result = _measure(path)
        assert result["error"] is not None and "archive/data/0" in result["error"]
        assert ("3221225472 bytes but the checkpoint declares 37632" in result["error"]) != declared
        assert result["seconds"] < 5 and result["growth"] < 64 << 20, result


def test_normal_files_peak_near_their_tensors(tmp_path):
    """64 MiB of tensors, zip and legacy layout: reading peaks at about their size (every
    tensor is a view of the one buffer its storage was read into), well under twice."""
    rng = np.random.default_rng(0)
    state = OrderedDict((f"layer{i}.weight", rng.standard_normal(2 << 20, dtype=np.float32))
                        for i in range(8))
    write_torch_zip(str(tmp_path / "big.pth"), state)
    write_torch_legacy(str(tmp_path / "big.th"), {"state_dict": state, "epoch": 1})
    for name in ("big.pth", "big.th"):
        result = _measure(str(tmp_path / name))
        assert result["error"] is None and result["bytes"] == 64 << 20
        assert result["growth"] < 1.5 * result["bytes"], result


def test_legacy_counts_must_match_the_declared_storages(tmp_path):
    import struct

    state = OrderedDict(list(_state().items())[:3])
    path = tmp_path / "resnet.th"
    write_torch_legacy(str(path), {"state_dict": state})
    data = path.read_bytes()
    first = state["conv1.weight"]  # the first storage key in sorted order
    header = struct.pack("<q", first.size) + first.tobytes()[:16]
    at = data.index(header)
    lying = data[:at] + struct.pack("<q", 3 << 28) + data[at + 8:]
    path.write_bytes(lying)
    with pytest.raises(ValueError, match=r"holds 805306368 items but the checkpoint declares 9408"):
        checkpoint.read_checkpoint(str(path))
    path.write_bytes(data[: at + 1000])  # cut inside the first storage
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.read_checkpoint(str(path))


def test_h5_datasets_that_declare_more_than_the_file_holds_are_refused(tmp_path):
    """A gzip-compressed, never-written dataset of 2 GiB in a few-KB legacy .h5 file, named
    like a layer of the model: refused before reading, in seconds."""
    import time

    import h5py

    path = str(tmp_path / "bomb.h5")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv1_conv"]
        group = f.create_group("conv1_conv")
        group.attrs["weight_names"] = [b"conv1_conv/kernel:0"]
        group.create_dataset("conv1_conv/kernel:0", shape=(512 << 20,), dtype="float32",
                             chunks=(1 << 20,), compression="gzip")
    assert os.path.getsize(path) < 1 << 20
    model = kr.CifarResNet(20)
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"declares 2147483648 bytes.*refusing"):
        weights.load_weights(model, path)
    with pytest.raises(ValueError, match=r"declares 2147483648 bytes.*refusing"):
        kr.CifarResNet(20, weights=path)  # (refused before the model is built)
    keras3 = str(tmp_path / "bomb.weights.h5")
    with h5py.File(keras3, "w") as f:
        f.create_dataset("layers/conv2d/vars/0", shape=(512 << 20,), dtype="float32",
                         chunks=(1 << 20,), compression="gzip")
    with pytest.raises(ValueError, match=r"declares 2147483648 bytes.*refusing"):
        weights.load_weights(model, keras3)
    assert time.monotonic() - start < 5


# ------------------------------------------------------------------------- zip wrappers

def _wrap(path, member_path, name, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression, compresslevel=1) as z:
        z.write(member_path, name)
    return path


def test_pth_zip_wrapper_is_unwrapped(tmp_path, resnet18):
    """osmr publishes ``<name>.pth.zip``: a zip holding the one .pth (deflated)."""
    inner = str(tmp_path / "resnet18-0676-7e5e0b7e.pth")
    write_torch_zip(inner, _state())
    path = _wrap(str(tmp_path / "resnet18-0676-7e5e0b7e.pth.zip"), inner, os.path.basename(inner))
    assert checkpoint.file_format(path) == "wrapped"
    opened = checkpoint.open_checkpoint(path)
    assert opened.format == "torch.save zip in a zip"
    weights.load_checkpoint(resnet18, path, state=opened)
    _assert_loaded(resnet18, _state())
    small = OrderedDict(list(_state().items())[:6])  # and a legacy file inside
    write_torch_legacy(inner, {"state_dict": small, "epoch": 3})
    opened = checkpoint.open_checkpoint(_wrap(path, inner, "model.th"))
    assert opened.format == "torch.save legacy in a zip" and opened.container == "state_dict"
    for k, v in small.items():
        np.testing.assert_array_equal(opened.state[k], v)


def test_zip_wrappers_keep_the_size_bounds(tmp_path):
    from tests.torch_files import write_torch_bomb, write_wrapped_bomb

    # an inner torch.save bomb is refused as before, from inside the wrapper
    write_torch_bomb(str(tmp_path / "bomb.pth"), OrderedDict(list(_state().items())[:2]))
    wrapped = _wrap(str(tmp_path / "bomb.pth.zip"), str(tmp_path / "bomb.pth"), "bomb.pth",
                    zipfile.ZIP_STORED)
    assert checkpoint.file_format(wrapped) == "wrapped"
    with pytest.raises(ValueError, match="holds 3221225472 bytes"):
        checkpoint.read_checkpoint(wrapped)
    # a wrapper whose one member (legacy magic, then zeros) inflates to 3 GiB: refused
    # before it is inflated
    write_wrapped_bomb(str(tmp_path / "zeros.pth.zip"))
    result = _measure(str(tmp_path / "zeros.pth.zip"))
    assert result["error"] is not None and "zip bomb" in result["error"], result
    assert result["seconds"] < 5 and result["growth"] < 64 << 20, result
    # two members: not a wrapper, and the error names the accepted formats
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.pth", b"x")
        z.writestr("b.pth", b"y")
    with pytest.raises(ValueError, match=r"torch.save checkpoint.*\.pth\.zip"):
        checkpoint.read_checkpoint(str(tmp_path / "two.zip"))


def test_h5_in_a_zip_loads_by_layer_name(tmp_path, tfk_cifar):
    """osmr's ``.tf2.h5.zip``: a zip holding one Keras-format ``.h5`` (tf_keras
    save_weights, the legacy layout), read from memory."""
    h5, x, expected = tfk_cifar
    path = str(tmp_path / "resnet20_cifar10-0597-9b0024ac.tf2.h5.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(h5, "resnet20_cifar10-0597-9b0024ac.tf2.h5")
    assert checkpoint.file_format(path) == "wrapped hdf5"
    with dtype_policy("fp32"):
        model = kr.CifarResNet(20, shortcut="B", weights=path, classifier_activation=None)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tfk_cifar(tmp_path_factory):
    """A CIFAR ResNet-20 (option B) with random weights and BN statistics written in the
    legacy .h5 layout (keras.applications' files, tf_keras ``save_weights``: groups by
    layer name, ``layer_names`` / ``weight_names`` attributes), its input and its logits:
    a round trip."""
    import h5py

    from tests.conftest import randomize_bn_statistics

    with dtype_policy("fp32"):
        source = kr.CifarResNet(20, shortcut="B", classifier_activation=None)
    randomize_bn_statistics(source, np.random.default_rng(3))
    h5 = str(tmp_path_factory.mktemp("h5") / "resnet20.h5")
    with h5py.File(h5, "w") as f:
        layers = [layer for layer in source.layers if layer.weights]
        f.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        for layer in layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0".encode() for w in layer.weights]
            group.attrs["weight_names"] = names
            for name, w in zip(names, layer.weights):
                group.create_dataset(name.decode(), data=w.numpy())
    x = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    return h5, x, np.asarray(source(x, training=False))


def test_tensors_may_not_multiply_their_storage(tmp_path):
    """Ten tensors viewing one 4 MiB storage would materialise 40 MiB: over 4x the stored
    bytes is refused before any copy; two views (tied weights) are fine."""
    import zipfile as zf

    from tests.torch_files import _global, _int, _ordered_dict, _str, _tuple

    def views(count, numel=1 << 20):
        pid = (b"(" + _str("storage") + _global("torch", "FloatStorage") + _str("0") + _str("cpu")
               + _int(numel) + b"tQ")
        items = b"".join(_str(f"w{i}") + _global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid
                         + _int(0) + _tuple((numel,)) + _tuple((1,)) + b"\x89" + _ordered_dict()
                         + b"tR" for i in range(count))
        path = str(tmp_path / f"views{count}.pth")
        with zf.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02" + _ordered_dict() + b"(" + items + b"u.")
            z.writestr("archive/data/0", np.arange(numel, dtype=np.float32).tobytes())
        return path

    with pytest.raises(ValueError, match=r"view 41943040 bytes of 4194304 stored"):
        checkpoint.read_checkpoint(views(10))
    tied = checkpoint.read_checkpoint(views(2))
    np.testing.assert_array_equal(tied["w0"], np.arange(1 << 20, dtype=np.float32))
    assert np.shares_memory(tied["w0"], tied["w1"])  # one buffer, as torch shares one storage
