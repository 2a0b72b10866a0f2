"""The ONNX export's graph: the stem's pool padding folded where that is exact, the BGR flip a Slice.

Outside references: TensorFlow's ``tf.pad`` + ``tf.nn.max_pool2d`` (what Keras'
ZeroPadding2D + MaxPooling2D compute), ONNX Runtime running hand-built graphs and the
exported files, and the in-process Keras model.
"""

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper

from keras_resnet import export, get_model
from keras_resnet.export.lite import fold_pool_padding
from keras_resnet.preprocessing import preprocess_input
from keras_resnet.utils import dtype_policy
from tests.conftest import randomize_batch_norm


def _pool_graph(relu):
    """x (NCHW) [-> Relu] -> Pad 1 (zeros) -> MaxPool 3x3 stride 2, as tf2onnx writes the stem."""
    nodes = []
    source = "x"
    if relu:
        nodes.append(helper.make_node("Relu", ["x"], ["r"]))
        source = "r"
    nodes.append(helper.make_node("Pad", [source, "pads"], ["p"], mode="constant"))
    nodes.append(helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2]))
    graph = helper.make_graph(
        nodes, "stem_pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 5, 5])],
        initializer=[numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], "int64"), "pads")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def _keras_pool(x_nchw, relu):
    """ZeroPadding2D(1) then MaxPooling2D(3, 2), as TensorFlow computes them (NHWC)."""
    x = tf.transpose(x_nchw, [0, 2, 3, 1])
    if relu:
        x = tf.nn.relu(x)
    y = tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")
    return tf.transpose(y, [0, 3, 1, 2]).numpy()


def test_pool_padding_after_a_relu_folds_into_the_pool_exactly():
    x = np.random.default_rng(0).normal(size=(2, 4, 9, 9)).astype("float32")  # half negative
    model = _pool_graph(relu=True)
    np.testing.assert_array_equal(_run(model, x), _keras_pool(x, relu=True))
    assert fold_pool_padding(model.graph) == 1
    assert [n.op_type for n in model.graph.node] == ["Relu", "MaxPool"]
    pool = model.graph.node[1]
    assert list(pool.input) == ["r"]
    assert helper.get_attribute_value(next(a for a in pool.attribute if a.name == "pads")) == [1, 1, 1, 1]
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(_run(model, x), _keras_pool(x, relu=True))


def test_pool_padding_of_signed_values_stays():
    x = np.random.default_rng(1).normal(size=(2, 4, 9, 9)).astype("float32")
    model = _pool_graph(relu=False)
    expected = _keras_pool(x, relu=False)
    assert fold_pool_padding(model.graph) == 0
    assert [n.op_type for n in model.graph.node] == ["Pad", "MaxPool"]
    np.testing.assert_array_equal(_run(model, x), expected)
    # why: a MaxPool's own padding never wins, the zero pad does where a border window is negative
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    forced = helper.make_model(
        helper.make_graph([pool], "forced", list(model.graph.input), list(model.graph.output)),
        opset_imports=[helper.make_opsetid("", 17)])
    assert not np.array_equal(_run(forced, x), expected)


@pytest.mark.slow
@pytest.mark.parametrize("name, pads", [("ResNet18", 0), ("ResNet18V2", 1)])
def test_exported_stem_and_preprocessing_ops(name, pads, tmp_path):
    """v1: conv -> BN -> ReLU -> pad -> pool, the pad folds; v2 pools the conv's signed output.
    The caffe BGR flip is one Slice (no Transpose + ReverseSequence pair)."""
    with dtype_policy("fp32"):
        model = get_model(name, weights=None, input_shape=(64, 64, 3), classes=10)
    randomize_batch_norm(model)
    path = export.export_onnx(model, tmp_path / "m.onnx", class_names=[str(i) for i in range(10)],
                              preprocessing="caffe")
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("Pad") == pads
    assert "ReverseSequence" not in ops and ops.count("Slice") == 1
    pixels = np.random.default_rng(2).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    expected = model(preprocess_input(pixels, mode="caffe"), training=False).numpy()
    np.testing.assert_allclose(export.onnx_probabilities(path, pixels), expected, rtol=1e-4, atol=1e-6)
