"""The model zoo against outside references: keras.applications (layers, names, counts,
outputs), torchvision / timm parameter counts, and He et al. 2015's CIFAR architectures."""

import ast
import inspect
import pathlib

import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import blocks, models, specs
from tests.conftest import copy_weights_by_name, randomize_bn_statistics


def trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def weight_layers(model):
    return [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]


# --------------------------------------------------------------- keras.applications parity

KERAS_APPS = {
    "ResNet50": (keras.applications.ResNet50, 25_636_712),
    "ResNet50V2": (keras.applications.ResNet50V2, 25_613_800),
    "ResNet101": (keras.applications.ResNet101, 44_707_176),
    "ResNet101V2": (keras.applications.ResNet101V2, 44_675_560),
    "ResNet152": (keras.applications.ResNet152, 60_419_944),
    "ResNet152V2": (keras.applications.ResNet152V2, 60_380_648),
}


@pytest.mark.parametrize("name", ["ResNet50", "ResNet50V2"])
def test_same_layers_names_and_outputs_as_keras_applications(name, rng):
    ref_fn, count = KERAS_APPS[name]
    ref = ref_fn(weights=None, input_shape=(64, 64, 3))
    ours = getattr(kr, name)(weights=None, input_shape=(64, 64, 3))
    assert ours.count_params() == ref.count_params() == count
    # every layer that holds weights: same name, same order, same shapes
    assert weight_layers(ours) == weight_layers(ref)
    # the whole layer list, layer types included (the subsampling identity of ResNetV2 is
    # unnamed in keras.applications, so compare types, and names where keras names them)
    assert [type(l).__name__ for l in ours.layers] == [type(l).__name__ for l in ref.layers]
    # and every layer is configured alike (strides, padding, bias, initializer, epsilon ...)
    keys = ("filters", "kernel_size", "strides", "padding", "use_bias", "groups", "activation",
            "epsilon", "momentum", "axis", "pool_size", "units")
    for a, b in zip(ours.layers, ref.layers):
        ca, cb = a.get_config(), b.get_config()
        assert {k: ca.get(k) for k in keys} == {k: cb.get(k) for k in keys}, a.name
        if "kernel_initializer" in cb:
            assert ca["kernel_initializer"]["class_name"] == cb["kernel_initializer"]["class_name"], a.name
    randomize_bn_statistics(ref, rng)
    copy_weights_by_name(ref, ours)
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), ref.predict(x, verbose=0), atol=1e-5)
    # features without the top: same within float32 rounding
    ref_feat = keras.Model(ref.input, ref.get_layer(ref.layers[-3].name).output)
    our_feat = keras.Model(ours.input, ours.get_layer(ref.layers[-3].name).output)
    np.testing.assert_allclose(our_feat.predict(x, verbose=0), ref_feat.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet101", "ResNet101V2", "ResNet152", "ResNet152V2"])
def test_deeper_keras_applications_counts_and_names(name):
    ref_fn, count = KERAS_APPS[name]
    ref = ref_fn(weights=None, include_top=False, input_shape=(64, 64, 3))
    ours = getattr(kr, name)(include_top=False, weights=None, input_shape=(64, 64, 3))
    assert weight_layers(ours) == weight_layers(ref)
    with_top = count - (2048 * 1000 + 1000)
    assert ours.count_params() == ref.count_params() == with_top


@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_pooling_and_variable_input_like_keras_applications(pooling):
    ref = keras.applications.ResNet50V2(weights=None, include_top=False, pooling=pooling)
    ours = kr.ResNet50V2(include_top=False, weights=None, pooling=pooling)
    assert ours.input_shape == ref.input_shape == (None, None, None, 3)
    assert ours.output_shape == ref.output_shape
    assert ours.layers[-1].name == ref.layers[-1].name


def test_input_tensor_is_used_as_input():
    inp = keras.Input((48, 48, 3), name="my_images")
    model = kr.ResNet18(include_top=False, pooling="avg", input_tensor=inp)
    assert model.inputs[0] is inp
    assert model.output_shape == (None, 512)


# --------------------------------------------------- torchvision / timm / paper parameter counts

# Trainable parameter counts of torchvision's and timm's models with a 1000-class head
# (published in their model tables): our v1.5 / v1d / ResNeXt / wide / SE presets must match.
REFERENCE_TRAINABLE = {
    "ResNet18V1_5": 11_689_512,  # torchvision resnet18
    "ResNet34V1_5": 21_797_672,  # torchvision resnet34
    "ResNet50V1_5": 25_557_032,  # torchvision resnet50
    "ResNet50D": 25_576_264,  # timm resnet50d
    "ResNeXt50_32x4d": 25_028_904,  # torchvision resnext50_32x4d
    "WideResNet50_2": 68_883_240,  # torchvision wide_resnet50_2
    "SEResNet50": 28_088_024,  # timm seresnet50
}


@pytest.mark.parametrize("name", sorted(REFERENCE_TRAINABLE))
def test_trainable_counts_equal_torchvision_and_timm(name):
    assert trainable_params(kr.get_model(name)) == REFERENCE_TRAINABLE[name]


@pytest.mark.slow
@pytest.mark.parametrize("name,count", [("ResNet101V1_5", 44_549_160), ("ResNet152V1_5", 60_192_808)])
def test_deep_v1_5_counts_equal_torchvision(name, count):
    assert trainable_params(kr.get_model(name)) == count


# He et al. 2015, sec. 4.2 / Table 6: option A, 10 classes.
CIFAR_TRAINABLE = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(CIFAR_TRAINABLE))
def test_cifar_counts_equal_paper_architecture(depth):
    model = kr.CifarResNet(depth)
    assert trainable_params(model) == CIFAR_TRAINABLE[depth]
    # 6n+2 layers with weights: the stem conv, 2 convs per block, the classifier
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) + 1 == depth


@pytest.mark.slow
def test_cifar_resnet1202_count():
    assert trainable_params(kr.get_model("ResNet1202")) == 19_421_274


def test_cifar_v2_bottleneck_depth_and_size():
    model = kr.get_model("ResNet164V2")
    # He et al. 2016, Table 2: ResNet-164 (pre-activation bottleneck) has 1.7M parameters
    assert round(trainable_params(model) / 1e6, 1) == 1.7
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D) and "_0_conv" not in l.name]
    assert len(convs) + 1 == 164


def test_shortcut_options_a_b_c():
    a = trainable_params(kr.CifarResNet(20, shortcut="A"))
    b = trainable_params(kr.CifarResNet(20, shortcut="B"))
    c = kr.CifarResNet(20, shortcut="C")
    # B: a 1x1 projection + BN (gamma, beta) where width grows 16->32 and 32->64
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    # C: every one of the 9 blocks projects
    assert sum("_0_conv" in l.name for l in c.layers) == 9
    assert not any("_0_conv" in l.name for l in kr.CifarResNet(20, shortcut="A").layers)


def test_option_a_shortcut_is_subsample_and_zero_pad(rng):
    x = rng.normal(size=(2, 8, 8, 16)).astype("float32")
    from keras_resnet.layers import ZeroPadShortcut

    out = keras.ops.convert_to_numpy(ZeroPadShortcut(32, 2)(x))
    expected = np.concatenate([x[:, ::2, ::2, :], np.zeros((2, 4, 4, 16), "float32")], axis=-1)
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------------ variants act where stated


def conv(model, name):
    return model.get_layer(name)


def test_stride_placement_v1_v15_v2():
    v1 = kr.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    v15 = kr.get_model("ResNet50V1_5", include_top=False, input_shape=(64, 64, 3))
    v2 = kr.ResNet50V2(include_top=False, weights=None, input_shape=(64, 64, 3))
    # keras.applications / Caffe ResNet: stride 2 on the first 1x1 of conv3_block1
    assert conv(v1, "conv3_block1_1_conv").strides == (2, 2)
    assert conv(v1, "conv3_block1_2_conv").strides == (1, 1)
    # v1.5 (torchvision): stride on the 3x3
    assert conv(v15, "conv3_block1_1_conv").strides == (1, 1)
    assert conv(v15, "conv3_block1_2_conv").strides == (2, 2)
    assert not conv(v15, "conv3_block1_2_conv").use_bias and conv(v1, "conv3_block1_2_conv").use_bias
    assert conv(v15, "conv3_block1_2_bn").epsilon == 1e-5 and conv(v1, "conv3_block1_2_bn").epsilon == 1.001e-5
    # keras ResNetV2: the last unit of conv2..conv4 downsamples on its 3x3
    assert conv(v2, "conv2_block3_2_conv").strides == (2, 2)
    assert conv(v2, "conv3_block1_2_conv").strides == (1, 1)
    assert conv(v2, "conv5_block3_2_conv").strides == (1, 1)


def test_v1d_deep_stem_and_average_pool_shortcut():
    m = kr.get_model("ResNet50D", include_top=False, input_shape=(64, 64, 3))
    assert [m.get_layer(f"conv1_{i}_conv").filters for i in (1, 2, 3)] == [32, 32, 64]
    pool = m.get_layer("conv3_block1_0_pool")
    assert isinstance(pool, keras.layers.AveragePooling2D) and pool.strides == (2, 2)
    assert m.get_layer("conv3_block1_0_conv").strides == (1, 1)


def test_zero_init_residual_makes_units_start_as_identity(rng):
    m = kr.ResNet18(zero_init_residual=True, include_top=False, input_shape=(64, 64, 3))
    assert np.all(m.get_layer("conv2_block2_2_bn").gamma.numpy() == 0)
    probe = keras.Model(m.input, [m.get_layer("conv2_block1_out").output,
                                  m.get_layer("conv2_block2_out").output])
    a, b = probe.predict(rng.uniform(0, 1, (1, 64, 64, 3)), verbose=0)
    np.testing.assert_allclose(b, a, atol=1e-6)  # relu(x + 0) == x for x = relu(...)


def test_zero_init_residual_preact_zeroes_last_conv():
    m = kr.ResNet18V2(zero_init_residual=True, include_top=False, input_shape=(64, 64, 3))
    assert np.all(m.get_layer("conv3_block1_2_conv").kernel.numpy() == 0)


def test_options_synchronized_bn_momentum_width_regularizer():
    m = kr.CifarResNet(20, synchronized_bn=True, bn_momentum=0.9, width_multiplier=2.0,
                       kernel_regularizer=keras.regularizers.L2(1e-4))
    bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.synchronized and l.momentum == 0.9 for l in bns)
    assert m.get_layer("conv1_conv").filters == 32 and m.get_layer("conv4_block1_1_conv").filters == 128
    kernels = [l for l in m.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(m.losses) == len(kernels)


def test_se_and_stochastic_depth(rng):
    m = kr.CifarResNet(20, se_ratio=0.25, stochastic_depth_rate=0.5)
    assert m.get_layer("conv2_block1_se_reduce").filters == 4
    drops = [l.rate for l in m.layers if type(l).__name__ == "StochasticDepth"]
    assert len(drops) == 9 and drops[-1] == pytest.approx(0.5) and drops == sorted(drops)
    # inference: identical to the same weights without stochastic depth
    plain = kr.CifarResNet(20, se_ratio=0.25)
    copy_weights_by_name(m, plain)
    x = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(m(x, training=False), plain(x, training=False), atol=1e-6)
    # training: some branches are dropped, so outputs differ
    assert not np.allclose(m(x, training=True), plain(x, training=True), atol=1e-4)


def test_groups_need_bottleneck():
    with pytest.raises(ValueError, match="groups=32"):
        kr.ResNet18(groups=32)


# ---------------------------------------------------------------------------- bad input


@pytest.fixture
def no_build(monkeypatch):
    """Fail loudly if a layer would be built: errors must come before any building."""

    def boom(*a, **k):
        raise AssertionError("a layer was built before the argument was checked")

    monkeypatch.setattr(blocks, "stem", boom)


@pytest.mark.parametrize(
    "call,fragment",
    [
        (lambda: kr.ResNet(51), "depth=51"),
        (lambda: kr.ResNet(50, variant="v3"), "variant='v3'"),
        (lambda: kr.ResNet50(input_shape=(31, 31, 3), include_top=False, weights=None), "input_shape=(31, 31, 3)"),
        (lambda: kr.ResNet50(weights="imagenet", input_shape=(224, 224, 1)), "input_shape=(224, 224, 1)"),
        (lambda: kr.ResNet50(weights="imagenet", classes=10), "classes=10"),
        (lambda: kr.ResNet50(include_top=False, pooling="sum", weights=None), "pooling='sum'"),
        (lambda: kr.ResNet50(weights="no/such/file.h5"), "weights='no/such/file.h5'"),
        (lambda: kr.ResNet18(weights="imagenet"), "depth=18"),
        # torchvision publishes ResNet-18 v1.5 weights: the error points at them
        (lambda: kr.ResNet18V1_5(weights="imagenet"), "ResNet18V1_5 has published weights: weights='torchvision'"),
        (lambda: kr.ResNet50D(weights="imagenet"), "weights='timm'"),  # not keras.applications' v1 file
        (lambda: kr.ResNet50(weights="imagenet", se_ratio=0.25), "se_ratio=0.25"),
        (lambda: kr.CifarResNet(21), "depth=21"),
        (lambda: kr.CifarResNet(20, input_shape=(7, 7, 3)), "input_shape=(7, 7, 3)"),
        (lambda: kr.ResNet50(input_shape=(28, 28, 3), include_top=False, weights=None), "input_shape=(28, 28, 3)"),
        (lambda: kr.CifarResNet(32, variant="v2"), "depth=32"),
        (lambda: kr.CifarResNet(20, shortcut="D"), "shortcut='D'"),
        (lambda: kr.ResNet50(weights=None, width_multiplier=0), "width_multiplier=0"),
        (lambda: kr.ResNet50(weights=None, stochastic_depth_rate=1.0), "stochastic_depth_rate=1.0"),
        (lambda: kr.ResNet50(weights=None, bogus=1), "bogus=1"),
        (lambda: kr.get_model("ResNet51"), "model='ResNet51'"),
    ],
)
def test_bad_input_is_refused_before_building(no_build, call, fragment):
    with pytest.raises(ValueError) as e:
        call()
    assert fragment in str(e.value)
    assert "Received" in str(e.value)


def test_cifar_family_trains_mnist_sized_images_at_their_own_size():
    # He et al. 2015's CIFAR networks downsample twice (32 -> 16 -> 8): 28x28 MNIST-style
    # images give 7x7 maps, the same architecture and parameter count as at 32x32.
    small = kr.CifarResNet(20, input_shape=(28, 28, 3))
    assert trainable_params(small) == CIFAR_TRAINABLE[20]  # the paper's ResNet-20, as at 32x32
    last_conv = [l for l in small.layers if isinstance(l, keras.layers.Conv2D)][-1]
    assert tuple(last_conv.output.shape[1:3]) == (7, 7)
    assert small.predict(np.zeros((1, 28, 28, 3), "float32"), verbose=0).shape == (1, 10)


def test_numpy_integers_and_floats_are_accepted_as_python_numbers(tmp_path):
    """What numpy hands a user (``np.unique(labels).size``, a shape from an array) is a valid
    size: the model is the paper's ResNet-20 and its .keras file holds plain numbers."""
    classes = np.unique(np.arange(10)).size  # numpy.int64
    shape = tuple(np.array([32, 32, 3]))  # numpy.int64 each
    model = kr.CifarResNet(20, classes=classes, input_shape=shape, bn_momentum=np.float32(0.9))
    assert trainable_params(model) == CIFAR_TRAINABLE[20]  # He et al. 2015's ResNet-20
    model.save(tmp_path / "m.keras")
    assert trainable_params(keras.saving.load_model(tmp_path / "m.keras")) == CIFAR_TRAINABLE[20]
    with pytest.raises(ValueError, match="classes=True"):
        kr.CifarResNet(20, classes=True)


# ----------------------------------------------------------------------- persistence


def test_config_and_keras_file_round_trip(tmp_path, rng):
    model = kr.CifarResNet(20, se_ratio=0.25, stochastic_depth_rate=0.1)  # custom layers too
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(x, verbose=0), expected, atol=1e-6)
    path = tmp_path / "m.keras"
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), expected, atol=1e-6)


# ------------------------------------------------------------------------- code rules


def test_model_code_is_backend_neutral():
    """Model code imports no TensorFlow (STYLE: builders run on every Keras 3 backend)."""
    root = pathlib.Path(kr.__file__).parent
    for fname in ("specs.py", "blocks.py", "models.py", "layers.py"):
        tree = ast.parse((root / fname).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                assert not any(n.split(".")[0] == "tensorflow" for n in names), fname


def test_registry_and_public_constructors_agree_exactly(monkeypatch):
    """Every registry row is a public constructor keras_resnet.NAME and nothing else is:
    each one builds its own row (family, depth, variant, options)."""
    from keras_resnet import zoo

    defined = {n for n, f in vars(zoo).items()
               if inspect.isfunction(f) and f.__module__ == zoo.__name__ and n[0].isupper()}
    assert defined == set(specs.MODELS)
    assert set(specs.MODELS) <= set(kr.__all__) and set(specs.MODELS) <= set(dir(kr))
    built = []
    monkeypatch.setattr(models, "ResNet", lambda depth, **kw: built.append(
        ("video" if kw.get("variant") in specs.VIDEO_VARIANTS else "imagenet", depth, kw)))
    monkeypatch.setattr(models, "CifarResNet", lambda depth, **kw: built.append(("cifar", depth, kw)))
    for name, spec in specs.MODELS.items():
        constructor = getattr(kr, name)
        assert constructor.__name__ == name
        constructor()
        family, depth, kwargs = built.pop()
        assert (family, depth, kwargs.pop("variant")) == (spec.family, spec.depth, spec.variant)
        # keras.applications' six default to its weights, as keras.applications does
        assert kwargs.pop("weights", None) == ("imagenet" if spec.keras_applications else None)
        assert {k: kwargs[k] for k in spec.options} == dict(spec.options), name


@pytest.mark.parametrize("name", sorted(KERAS_APPS))
def test_keras_applications_signature_order_and_defaults(name):
    """keras.applications' own signature: the same parameters in the same order, the same
    defaults (weights="imagenet"), apart from the model name, which we derive."""
    ref = inspect.signature(getattr(keras.applications, name)).parameters
    ours = inspect.signature(getattr(kr, name)).parameters
    assert list(ours)[: len(ref)] == list(ref)
    for p in ref:
        if p != "name":
            assert ours[p].default == ref[p].default, p
            assert ours[p].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD, p
    # every other constructor is keyword-only and starts without weights
    assert all(p.kind == inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(kr.ResNet50V1_5).parameters.values())


def test_keras_applications_positional_call(monkeypatch):
    """The positional call keras.applications documents gives the same model shape."""
    args = (False, None, None, (64, 64, 3), "avg")  # include_top, weights, input_tensor, ...
    ours, ref = kr.ResNet50(*args), keras.applications.ResNet50(*args)
    assert ours.output_shape == ref.output_shape == (None, 2048)
    assert ours.count_params() == ref.count_params()
    # all six map the eight positions onto the same builder arguments
    built = []
    monkeypatch.setattr(models, "ResNet", lambda depth, **kw: built.append(kw))
    names = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
             "classifier_activation", "name")
    values = (True, None, None, (64, 64, 3), None, 7, None, "mine")
    for name in KERAS_APPS:
        getattr(kr, name)(*values)
        kwargs = built.pop()
        assert {k: kwargs[k] for k in names} == dict(zip(names, values)), name
