"""1D and 3D ResNets. The named video models against torchvision (tests/fixtures/
video_resnets.json, written by tools/make_video_fixtures.py with torch): the same
trainable-parameter counts, and the same logits on a clip under the same deterministic
weights, which this test rebuilds without torch (tests/torch_files.tensor_for) and loads
from a ``.pth`` file written in torch.save's layout."""

import json
import os

import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet.weights import video
from keras_resnet.utils import dtype_policy
from tests import video_reference
from tests.torch_files import state_from_manifest, write_torch_zip

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "video_resnets.json")
# torchvision.models.video *_Weights.KINETICS400_V1.meta["num_params"]
TORCHVISION = {"r3d_18": ("R3D18", 33_371_472), "mc3_18": ("MC3_18", 11_695_440),
               "r2plus1d_18": ("R2Plus1D18", 31_505_325)}


def trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def fixtures():
    with open(FIXTURES) as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_video_models_equal_torchvision(name, fixtures, tmp_path):
    ours, count = TORCHVISION[name]
    ref = fixtures["models"][name]
    assert ref["trainable_params"] == count
    path = str(tmp_path / f"{name}.pth")
    write_torch_zip(path, state_from_manifest(ref["manifest"]))
    clip = video_reference.clip()  # (1, 3, 4, 32, 32), torchvision's layout
    with dtype_policy("fp32"):
        model = getattr(kr, ours)(weights=path, input_shape=clip.shape[2:] + (3,),
                                  classifier_activation=None)
    assert model.name == name and kr.model_info(ours)["family"] == "video"
    assert trainable_params(model) == count
    logits = model.predict(np.transpose(clip, (0, 2, 3, 4, 1)).astype("float32"), verbose=0)
    expected = np.asarray(ref["logits"])
    rel = float(np.max(np.abs(logits - expected)) / np.max(np.abs(expected)))
    assert rel < 1e-4, rel


def test_converter_names_what_is_missing_or_left_over(fixtures):
    state = state_from_manifest(fixtures["models"]["r3d_18"]["manifest"])
    model = kr.R3D18(input_shape=(4, 32, 32, 3))
    with pytest.raises(ValueError, match="layer1.0.conv1.0.weight"):
        video.load_torchvision_video(model, {k: v for k, v in state.items() if k != "layer1.0.conv1.0.weight"})
    with pytest.raises(ValueError, match="extra.weight"):
        video.load_torchvision_video(model, {**state, "extra.weight": np.zeros(3)})
    with pytest.raises(ValueError, match="stem.0.weight.*needs"):  # an R(2+1)D dict
        video.load_torchvision_video(
            kr.R3D18(input_shape=(4, 32, 32, 3)),
            state_from_manifest(fixtures["models"]["r2plus1d_18"]["manifest"]))
    with pytest.raises(ValueError, match="classes="):  # a 400-class checkpoint, 10 classes
        kr.R3D18(weights=state, classes=10)
    # without top the checkpoint's classifier is left out; a state dict in memory works too
    kr.R3D18(weights=state, include_top=False, input_shape=(4, 32, 32, 3))


def test_video_stem_strides():
    model = kr.R3D18(include_top=False, input_shape=(8, 64, 64, 3))
    # stem 1x2x2 and no max pool, then stages of stride 1, 2, 2, 2 on every axis
    assert model.output_shape == (None, 1, 4, 4, 512)
    assert model.get_layer("conv1_relu").output.shape == (None, 8, 32, 32, 64)
    mc3 = kr.MC3_18(include_top=False, input_shape=(8, 64, 64, 3))
    assert mc3.output_shape == (None, 8, 4, 4, 512)  # stages 2-4 keep time


# ------------------------------------------------------------------ 1D and generic 3D

@pytest.mark.parametrize("dims, shape", [(1, (64, 2)), (3, (16, 32, 32, 1))])
@pytest.mark.parametrize("depth, variant, options", [
    (18, "v1.5", {}),
    (50, "v2", dict(se_ratio=0.25, stochastic_depth_rate=0.1, width_multiplier=0.25)),
])
def test_every_dimension_takes_the_usual_options(dims, shape, depth, variant, options, rng):
    model = kr.ResNet(depth, variant=variant, dims=dims, input_shape=shape, classes=5, **options)
    conv = {1: keras.layers.Conv1D, 3: keras.layers.Conv3D}[dims]
    assert not any(isinstance(l, keras.layers.Conv2D) for l in model.layers)
    assert model.get_layer("conv1_conv").kernel.shape[:dims] == (7,) * dims  # stem kernel 7
    units = [l for l in model.layers if isinstance(l, conv) and "_2_conv" in l.name]
    assert units and all(l.kernel.shape[:dims] == (3,) * dims for l in units)
    out = model(rng.uniform(-1, 1, (2,) + shape).astype("float32"), training=True)
    assert out.shape == (2, 5)


def test_2d_models_count_what_1d_and_3d_models_count():
    """The same stages in every dimension: only the kernels' spatial extent changes, so a
    1D ResNet-26's 1x1 convs, BNs and Dense have exactly the 2D model's parameters."""
    def by_layer(model):
        return {l.name: sum(int(np.prod(w.shape)) for w in l.weights) for l in model.layers if l.weights}
    two = by_layer(kr.ResNet(26, variant="v1.5", input_shape=(64, 64, 3)))
    one = by_layer(kr.ResNet(26, variant="v1.5", dims=1, input_shape=(64, 3)))
    assert two.keys() == one.keys()
    for name, n in two.items():
        if "_1_conv" in name or "_3_conv" in name or "_0_conv" in name or "bn" in name or name == "predictions":
            assert one[name] == n, name
        elif name.endswith("_2_conv"):
            assert one[name] * 3 == n, name


def test_cifar_resnet_in_1d(rng):
    model = kr.CifarResNet(20, dims=1, classes=3)
    assert model.input_shape == (None, None, 3) and model.name == "resnet20_1d"
    assert model(rng.uniform(-1, 1, (2, 50, 3)).astype("float32")).shape == (2, 3)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(depth=18, dims=4), "dims"),
    (dict(depth=18, variant="r3d", dims=2), "dims"),
    (dict(depth=50, dims=1, weights="imagenet"), "weights"),
    (dict(depth=18, dims=1, input_shape=(32, 32, 3)), "input_shape"),
    (dict(depth=18, dims=3, conv_kinds=("full", "cube")), "conv_kinds"),
    (dict(depth=18, dims=2, conv_kinds=("full",) * 4), "conv_kinds"),
    (dict(depth=18, dims=1, stem="r3d"), "stem"),
])
def test_bad_dimension_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        kr.ResNet(**kwargs)


# ------------------------------------------------------- other backends, SavedModel export

def _small_models():
    """A 1D pre-activation SE model with stochastic depth, and R(2+1)D-18 (both 3D conv kinds
    of a factored unit): names -> (model, input)."""
    rng = np.random.default_rng(3)
    with dtype_policy("fp32"):
        signal = kr.ResNet(18, variant="v2", dims=1, input_shape=(64, 2), classes=4, se_ratio=0.25,
                           stochastic_depth_rate=0.1, width_multiplier=0.5)
        clip = kr.R2Plus1D18(input_shape=(4, 32, 32, 3), classes=7, width_multiplier=0.25)
    return {"signal": (signal, rng.uniform(-1, 1, (2, 64, 2)).astype("float32")),
            "clip": (clip, rng.uniform(-1, 1, (2, 4, 32, 32, 3)).astype("float32"))}


JAX_PREDICT = r"""
import json, sys, keras, numpy as np
from keras_resnet import ResNet
from keras_resnet import R2Plus1D18
assert keras.backend.backend() == "jax"
folder = sys.argv[1]
models = {"signal": ResNet(18, variant="v2", dims=1, input_shape=(64, 2), classes=4, se_ratio=0.25,
                           stochastic_depth_rate=0.1, width_multiplier=0.5),
          "clip": R2Plus1D18(input_shape=(4, 32, 32, 3), classes=7, width_multiplier=0.25)}
for name, model in models.items():
    model.load_weights(f"{folder}/{name}.weights.h5")
    x = np.load(f"{folder}/{name}.npy")
    np.save(f"{folder}/{name}.jax.npy", model.predict(x, verbose=0))
    print(json.dumps({"name": name, "params": model.count_params()}))
"""


@pytest.mark.slow
def test_1d_and_3d_models_give_the_same_outputs_on_jax(tmp_path):
    from tests.test_jax_backend import run_jax

    expected = {}
    for name, (model, x) in _small_models().items():
        model.save_weights(str(tmp_path / f"{name}.weights.h5"))
        np.save(tmp_path / f"{name}.npy", x)
        expected[name] = (model.count_params(), model.predict(x, verbose=0))
    rows = run_jax(JAX_PREDICT, str(tmp_path))
    assert [r["name"] for r in rows] == ["signal", "clip"]
    for row in rows:
        params, outputs = expected[row["name"]]
        assert row["params"] == params
        np.testing.assert_allclose(np.load(tmp_path / f"{row['name']}.jax.npy"), outputs, rtol=1e-4, atol=1e-5)


def test_1d_and_3d_models_export_a_tensor_signature(tmp_path):
    """What export's ``predict_pixels`` is for images, for signals and clips: a SavedModel
    signature from a float32 tensor of the model's input shape to the probabilities."""
    import tensorflow as tf

    for name, (model, x) in _small_models().items():
        spec = tf.TensorSpec((None,) + model.input_shape[1:], tf.float32, name="inputs")
        module = tf.Module()
        module.model_variables = model.variables
        module.predict = tf.function(lambda t: {"probabilities": model(t, training=False)}, input_signature=[spec])
        path = str(tmp_path / name)
        tf.saved_model.save(module, path, signatures={"predict_tensor": module.predict.get_concrete_function()})
        served = tf.saved_model.load(path).signatures["predict_tensor"]
        np.testing.assert_allclose(served(inputs=tf.constant(x))["probabilities"].numpy(),
                                   model.predict(x, verbose=0), rtol=1e-5, atol=1e-6, err_msg=name)
