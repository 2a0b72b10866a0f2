"""benchmarks/profile_train_step.py: reading a real TensorFlow profiler trace of model.fit.

The op counts are pinned to the model's own layers: every Conv2D layer runs one
convolution forward and one filter gradient per step, every BatchNormalization one
fused forward and one fused gradient kernel, whether or not oneDNN rewrites them.
"""

import importlib.util
import pathlib

import keras
import pytest

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "profile_train_step.py"
spec = importlib.util.spec_from_file_location("profile_train_step", PATH)
profile_train_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_train_step)


def _count(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("trace"))
    model = profile_train_step.build("keras_resnet", "ResNet20", image_size=32, batch_size=8, classes=10, steps=2)
    profile_train_step.profile_fit(model, batch_size=8, steps=2, logdir=logdir, warmup=1)
    result = profile_train_step.aggregate(
        profile_train_step.load_xspace(logdir), model_name=model.name,
        layer_classes=profile_train_step.layer_classes(model), optimizer_name=model.optimizer.name)
    return model, result


def test_op_counts_per_step_match_the_models_layers(traced):
    model, result = traced
    assert result["steps"] == 2
    counts = {}
    for row in result["by_type"]:
        counts[row["group"]] = counts.get(row["group"], 0) + row["count"]
    convs = _count(model, keras.layers.Conv2D)
    assert convs == 19  # ResNet-20: 1 + 3 stages x 3 units x 2 convolutions, identity/padding shortcuts
    assert counts["conv forward"] == convs
    assert counts["conv backprop filter"] == convs
    assert counts["conv backprop input"] == convs - 1  # the stem sees the images: no input gradient
    assert counts["batch norm (fused kernels)"] == 2 * _count(model, keras.layers.BatchNormalization)


def test_shares_add_up_to_coverage_and_layers_to_op_time(traced):
    _, result = traced
    assert sum(r["share"] for r in result["by_type"]) == pytest.approx(result["coverage"])
    assert sum(r["ms"] for r in result["by_type"]) == pytest.approx(result["op_ms"])
    assert sum(result["by_layer"].values()) == pytest.approx(result["op_ms"])
    assert 0 < result["busy"] <= 1
    conv = {phase: ms for (layer, phase), ms in result["by_layer"].items() if layer == "Conv2D"}
    assert conv["forward"] > 0 and conv["backward"] > 0
    assert any(phase == "optimizer" for _, phase in result["by_layer"])
    table = profile_train_step.format_type_table(result)
    assert "**all ops (coverage)**" in table and "Conv2DBackpropFilter" in table


def test_missing_trace_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="Received: path="):
        profile_train_step.load_xspace(str(tmp_path))


def test_onednn_kernels_are_grouped_with_the_op_they_implement():
    group = profile_train_step.op_group
    assert group("_MklNativeConv2DBackpropFilterWithBias") == group("Conv2DBackpropFilter") == "conv backprop filter"
    assert group("_MklNativeFusedConv2D") == group("_FusedConv2D") == "conv forward"
    assert group("_MklNativeFusedBatchNormEx") == "batch norm (fused kernels)"
    assert group("SomethingNew") == "other"


def test_conv_table_splits_the_conv_ops_by_layer(traced):
    model, result = traced
    by_group = {}
    for row in result["by_type"]:
        by_group[row["group"]] = by_group.get(row["group"], 0) + row["ms"]
    for group in profile_train_step.CONV_GROUPS:  # every conv op is attributed to one of the model's convs
        layers = {layer for (layer, g) in result["by_conv"] if g == group}
        assert sum(ms for (_, g), ms in result["by_conv"].items() if g == group) == pytest.approx(by_group[group])
        expected = _count(model, keras.layers.Conv2D) - (group == "conv backprop input")
        assert len(layers) == expected and "" not in layers and None not in layers
    shapes = profile_train_step.conv_shapes(model, 8)
    # ResNet-20's convolutions counted by hand, in multiply-adds an image: stem 32*32*27*16
    # = 0.44 M; 6 convs 32*32*144*16 = 14.16 M; 16*16*144*32 + 5 * 16*16*288*32 = 12.98 M;
    # 8*8*288*64 + 5 * 8*8*576*64 = 12.98 M; together 40.55 M, 2 FLOPs each
    assert sum(g for _, g in shapes.values()) == pytest.approx(8 * 2 * 40.55e6 / 1e9, rel=1e-3)
    assert shapes["conv1_conv"][0] == "3x3, 3 -> 16, 32x32 out, stride 1"
    table = profile_train_step.format_conv_table(result, shapes)
    assert "| 3x3, 16 -> 16, 32x32 out, stride 1 (6) |" in table and "**all convolutions**" in table
