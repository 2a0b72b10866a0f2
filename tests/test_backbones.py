"""get_backbone and frozen BatchNormalization against outside references: keras.applications'
own stage outputs (the layers keras-hub's ``pyramid_outputs`` and FPNs take), our classifier's
feature map under the same weights, and the variables ``fit`` must leave alone."""

import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet.backbones import feature_layers
from keras_resnet.normalization import BatchNormalization
from keras_resnet.utils import dtype_policy
from tests.conftest import copy_weights_by_name, randomize_bn_statistics

# keras.applications layer at each stride: the last unit of each stage; ResNetV2's stages
# 2-4 end in a strided unit, so its stride-4/8/16 maps are the units before.
KERAS_APPS_LEVELS = {
    "ResNet50": ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    "ResNet50V2": ("conv2_block2_out", "conv3_block3_out", "conv4_block5_out", "post_relu"),
}


@pytest.mark.parametrize("name", sorted(KERAS_APPS_LEVELS))
def test_levels_are_keras_applications_stage_outputs_and_p5_the_classifier_map(name, rng):
    with dtype_policy("fp32"):
        ref = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=(64, 64, 3))
        backbone = kr.get_backbone(name, input_shape=(64, 64, 3))
        classifier = kr.get_model(name, include_top=False, input_shape=(64, 64, 3))
    randomize_bn_statistics(ref, rng)
    copy_weights_by_name(ref, backbone)
    copy_weights_by_name(ref, classifier)
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    taps = keras.Model(ref.input, [ref.get_layer(n).output for n in KERAS_APPS_LEVELS[name]])
    expected = dict(zip(("P2", "P3", "P4", "P5"), taps.predict(x, verbose=0)))
    got = backbone.predict(x, verbose=0)
    assert sorted(got) == ["P2", "P3", "P4", "P5"]
    for level, stride in zip(("P2", "P3", "P4", "P5"), (4, 8, 16, 32)):
        assert got[level].shape[1:3] == (64 // stride, 64 // stride), level
        np.testing.assert_allclose(got[level], expected[level], rtol=1e-5, atol=1e-5, err_msg=level)
    np.testing.assert_array_equal(got["P5"], classifier.predict(x, verbose=0))


def test_any_input_size_and_strides(rng):
    backbone = kr.get_backbone("ResNet18V1_5")
    assert backbone.input_shape == (None, None, None, 3)
    for h, w in ((64, 64), (96, 160)):
        out = backbone(rng.uniform(-1, 1, (1, h, w, 3)).astype("float32"))
        for level, (stride, channels) in {"P2": (4, 64), "P3": (8, 128), "P4": (16, 256),
                                          "P5": (32, 512)}.items():
            assert tuple(out[level].shape) == (1, h // stride, w // stride, channels)


def test_cifar_backbone_gives_three_stages(rng):
    backbone = kr.get_backbone("ResNet20")
    out = backbone(rng.uniform(-1, 1, (1, 32, 32, 3)).astype("float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "P2": (1, 32, 32, 16), "P3": (1, 16, 16, 32), "P4": (1, 8, 8, 64)}


def test_video_backbone_strides_in_time_and_space(rng):
    # torchvision's video stem strides 1x2x2 and has no max pool: space 2/4/8/16, time 1/2/4/8
    out = kr.get_backbone("R3D18")(rng.uniform(-1, 1, (1, 8, 64, 64, 3)).astype("float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "P2": (1, 8, 32, 32, 64), "P3": (1, 4, 16, 16, 128), "P4": (1, 2, 8, 8, 256), "P5": (1, 1, 4, 4, 512)}


def test_weights_file_loads_as_for_the_classifier(tmp_path, rng):
    with dtype_policy("fp32"):
        classifier = kr.get_model("ResNet18", include_top=False, input_shape=(64, 64, 3))
        randomize_bn_statistics(classifier, rng)
        path = str(tmp_path / "resnet18_notop.weights.h5")
        classifier.save_weights(path)
        backbone = kr.get_backbone("ResNet18", weights=path, input_shape=(64, 64, 3))
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(backbone.predict(x, verbose=0)["P5"], classifier.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_feature_layers_for_a_single_unit_stage_with_last_block_stride():
    assert feature_layers((1, 2), stride_block="last", preact=True) == {
        "P2": "pool1_pool", "P3": "post_relu"}


def _bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_frozen_batch_norm_keeps_statistics_and_affine_under_fit(rng):
    x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 8)
    with dtype_policy("fp32"):
        backbone = kr.get_backbone("ResNet18V1_5", input_shape=(32, 32, 3), freeze_batch_norm=True,
                                   bn_momentum=0.0)
        features = keras.layers.GlobalAveragePooling2D()(backbone.output["P5"])
        model = keras.Model(backbone.input, keras.layers.Dense(3)(features))
    # statistics as a pretrained model has them: thaw, take one batch's moments, freeze again
    for b in _bn_layers(backbone):
        b.frozen = False
        b.trainable = True
    backbone(x, training=True)
    kr.freeze_batch_norm(backbone)
    bns = _bn_layers(backbone)
    assert bns and all(isinstance(b, BatchNormalization) and b.frozen for b in bns)
    # the trap of keras-team/keras#20285: unfreezing the base must not thaw its BNs
    backbone.trainable = True
    assert not any(b.trainable for b in bns)
    before = {b.name: [w.copy() for w in b.get_weights()] for b in bns}
    convs = {l.name: l.get_weights()[0].copy() for l in backbone.layers if isinstance(l, keras.layers.Conv2D)}
    # in training mode the BNs already normalise with their moving statistics
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-5, atol=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for b in bns:
        for old, new in zip(before[b.name], b.get_weights()):
            np.testing.assert_array_equal(old, new, err_msg=b.name)
    changed = [name for name, k in convs.items() if np.max(np.abs(backbone.get_layer(name).get_weights()[0] - k)) > 0]
    assert sorted(changed) == sorted(convs)  # every conv trained


def test_frozen_state_survives_a_keras_file(tmp_path):
    backbone = kr.get_backbone("ResNet20", freeze_batch_norm=True)
    path = str(tmp_path / "b.keras")
    backbone.save(path)
    loaded = keras.models.load_model(path)
    bns = _bn_layers(loaded)
    assert len(bns) == len(_bn_layers(backbone)) and all(b.frozen and not b.trainable for b in bns)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(name="ResNet51"), "model"),
    (dict(name="ResNet50", include_top=True), "include_top"),
    (dict(name="ResNet50", pooling="avg"), "pooling"),
    (dict(name="ResNet50", freeze_batch_norm="yes"), "freeze_batch_norm"),
])
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=f"{argument}="):
        kr.get_backbone(**kwargs)
