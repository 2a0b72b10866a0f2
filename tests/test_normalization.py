"""keras_resnet.normalization.BatchNormalization against the outside reference, keras.layers.BatchNormalization.

Every test runs Keras' own layer and ours on the same inputs and weights and
asserts equal outputs, gradients (tf.GradientTape) and moving statistics: 1e-5
relative to the values' scale in float32, on one device and under
MirroredStrategy over two logical CPU devices (in a subprocess, because logical
devices must be configured before TensorFlow initialises its devices). There, without
synchronization, Keras' replicas each keep their own moving statistics and ours keep
their mean on every replica.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet.normalization as normalization
from keras_resnet.normalization import BatchNormalization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_close(actual, expected, tol=1e-5, what=""):
    """max |actual - expected| <= tol * max(1, max |expected|): 1e-5 on the values' own scale."""
    actual = np.asarray(actual, dtype="float64")
    expected = np.asarray(expected, dtype="float64")
    assert actual.shape == expected.shape, what
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol:g} * {scale:.3g}"


def make_pair(input_shape, seed=0, **kwargs):
    """Keras' layer and ours, built on input_shape with the same non-trivial weights."""
    rng = np.random.default_rng(seed)
    reference, ours = keras.layers.BatchNormalization(**kwargs), BatchNormalization(**kwargs)
    reference.build(input_shape)
    ours.build(input_shape)
    values = [rng.normal(0.0, 1.0, w.shape).astype(w.dtype) for w in reference.weights]
    for v, w in zip(values, reference.weights):
        if "variance" in w.name:
            v[...] = np.abs(v) + 0.5
    reference.set_weights(values)
    ours.set_weights(values)
    return reference, ours


def forward_backward(layer, x, training):
    """Outputs and gradients of a non-linear loss w.r.t. the input and the trainable weights."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_mean(tf.cast(y, "float32") * tf.cos(tf.cast(y, "float32")))
    grads = tape.gradient(loss, [x] + [w.value for w in layer.trainable_weights])
    return [y] + grads


def compare(reference, ours, x, training, graph):
    fn = tf.function(forward_backward) if graph else forward_backward
    expected = fn(reference, x, training)
    actual = fn(ours, x, training)
    names = ["outputs", "d/dx"] + [f"d/d{w.name}" for w in reference.trainable_weights]
    for name, a, e in zip(names, actual, expected):
        assert a.dtype == e.dtype, name
        assert_close(a, e, what=f"{name} (training={training}, graph={graph})")
    for w_ref, w_ours in zip(reference.weights, ours.weights):
        assert w_ref.name == w_ours.name
        assert_close(w_ours.numpy(), w_ref.numpy(), what=f"{w_ref.name} after training={training}")


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize(
    "axis,shape", [(-1, (6, 5, 7, 8)), (1, (6, 8, 5, 7))], ids=["channels_last", "channels_first"]
)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"momentum": 0.9, "epsilon": 1.001e-5},
        {"center": False, "epsilon": 1e-6},
        {"scale": False, "momentum": 0.5},
    ],
    ids=["defaults", "keras_applications", "no_center", "no_scale"],
)
def test_training_then_inference_matches_keras(graph, axis, shape, options):
    reference, ours = make_pair(shape, axis=axis, **options)
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, shape).astype("float32"))
    for _ in range(3):  # moving statistics drift the same way step after step
        compare(reference, ours, x, training=True, graph=graph)
    compare(reference, ours, x * 0.5 - 1.0, training=False, graph=graph)


def test_frozen_layer_runs_in_inference_mode_like_keras():
    reference, ours = make_pair((4, 3, 3, 5))
    reference.trainable = ours.trainable = False
    x = tf.constant(np.random.default_rng(2).normal(size=(4, 3, 3, 5)).astype("float32"))
    compare(reference, ours, x, training=True, graph=True)


def test_batch_of_one_value_per_channel_matches_keras():
    # n == 1: the fused kernel applies no Bessel correction, Keras' variance is 0.
    reference, ours = make_pair((1, 1, 1, 4))
    x = tf.constant([[[[1.0, -2.0, 3.0, 0.5]]]])
    compare(reference, ours, x, training=True, graph=True)


def graph_ops(layer, spec, training):
    fn = tf.function(lambda x: layer(x, training=training))
    return [node.op for node in fn.get_concrete_function(spec).graph.as_graph_def().node]


def test_fused_kernel_runs_in_input_precision():
    # Keras' own layer upcasts bf16 to float32 and has no fused op; ours runs one
    # FusedBatchNormV3 on the bfloat16 tensor with no cast around it.
    spec = tf.TensorSpec((2, 4, 4, 8), "bfloat16")
    for training in (True, False):
        reference, ours = (cls(dtype="mixed_bfloat16") for cls in (keras.layers.BatchNormalization, BatchNormalization))
        ref_ops, our_ops = graph_ops(reference, spec, training), graph_ops(ours, spec, training)
        assert "FusedBatchNormV3" not in ref_ops and "Cast" in ref_ops
        assert our_ops.count("FusedBatchNormV3") == 1
        assert "Cast" not in our_ops


def test_mixed_bfloat16_is_close_to_float32():
    shape = (8, 6, 6, 16)
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    reference, _ = make_pair(shape)
    ours = BatchNormalization(dtype="mixed_bfloat16")
    ours.build(shape)
    ours.set_weights(reference.get_weights())
    for training in (True, False):
        expected = reference(x, training=training)
        actual = ours(tf.cast(x, "bfloat16"), training=training)
        assert actual.dtype == tf.bfloat16
        # bfloat16 keeps 8 significant bits: about 2**-8 relative error per value
        np.testing.assert_allclose(np.asarray(tf.cast(actual, "float32")), expected, rtol=2e-2, atol=5e-2)
    for w_ref, w_ours in zip(reference.weights, ours.weights):
        assert w_ours.dtype == "float32"
        np.testing.assert_allclose(w_ours.numpy(), w_ref.numpy(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((6, 8), {}),  # Dense activations
        ((4, 5, 8), {}),  # sequences
        ((4, 5, 6, 8), {"axis": 2}),  # not the channel axis
        ((4, 5, 6, 8), {"renorm": True, "renorm_clipping": {"rmax": 2.0}}),
        ((4, 5, 6, 8), {"dtype": "float64"}),
    ],
    ids=["rank2", "rank3", "axis2", "renorm", "float64"],
)
def test_cases_without_fused_kernel_fall_back_to_keras(shape, kwargs):
    reference, ours = make_pair(shape, **kwargs)
    x = tf.constant(np.random.default_rng(4).normal(1.0, 2.0, shape), dtype=reference.dtype)
    assert "FusedBatchNormV3" not in graph_ops(ours, tf.TensorSpec(shape, x.dtype), True)
    for training in (True, True, False):
        compare(reference, ours, x, training=training, graph=True)


def test_mask_falls_back_to_keras():
    reference, ours = make_pair((3, 4, 5))
    x = tf.constant(np.random.default_rng(5).normal(size=(3, 4, 5)).astype("float32"))
    mask = tf.constant([[True, True, False, False], [True, True, True, True], [True, False, False, False]])
    np.testing.assert_allclose(ours(x, training=True, mask=mask), reference(x, training=True, mask=mask), atol=1e-5)
    for w_ref, w_ours in zip(reference.weights, ours.weights):
        np.testing.assert_allclose(w_ours.numpy(), w_ref.numpy(), atol=1e-6)


def test_other_backends_take_keras_path(monkeypatch):
    # The dispatch looks at the Keras backend; on JAX/torch it must run Keras' call.
    reference, ours = make_pair((2, 3, 3, 4))
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert "FusedBatchNormV3" not in graph_ops(ours, tf.TensorSpec((2, 3, 3, 4)), True)
    x = tf.constant(np.random.default_rng(6).normal(size=(2, 3, 3, 4)).astype("float32"))
    compare(reference, ours, x, training=True, graph=False)


def test_module_imports_tensorflow_only_inside_functions():
    with open(normalization.__file__) as f:
        tree = ast.parse(f.read())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top_level for a in n.names] + [getattr(n, "module", None) for n in top_level]
    assert not any(name and name.split(".")[0] == "tensorflow" for name in names)


def test_config_round_trip_and_registration():
    layer = BatchNormalization(axis=1, momentum=0.9, epsilon=1.001e-5, center=False, synchronized=True, name="bn")
    config = layer.get_config()
    assert config == keras.layers.BatchNormalization.from_config(config).get_config()
    clone = BatchNormalization.from_config(config)
    assert type(clone) is BatchNormalization and clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert keras.saving.get_registered_name(BatchNormalization) == "keras_resnet>BatchNormalization"
    revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(revived) is BatchNormalization and revived.get_config() == config


def conv_bn_model(bn_class, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = bn_class(momentum=0.9, epsilon=1.001e-5, name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


def digits_like(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 3, n)


def test_fit_matches_keras():
    x, y = digits_like()
    models = [conv_bn_model(cls) for cls in (keras.layers.BatchNormalization, BatchNormalization)]
    models[1].set_weights(models[0].get_weights())
    for model in models:
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for w_ref, w_ours in zip(models[0].weights, models[1].weights):
        assert w_ref.path == w_ours.path
        assert_close(w_ours.numpy(), w_ref.numpy(), tol=1e-4, what=w_ref.path)
    assert_close(models[1].predict(x, verbose=0), models[0].predict(x, verbose=0), tol=1e-4)


def test_keras_file_round_trip(tmp_path):
    x, y = digits_like()
    model = conv_bn_model(BatchNormalization)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # non-trivial moving statistics
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded.get_layer("bn")) is BatchNormalization
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_weight_files_interchange_with_keras_layer(tmp_path):
    # Same variables and names as Keras' layer: its weight files load into ours and back.
    x, y = digits_like()
    reference = conv_bn_model(keras.layers.BatchNormalization, seed=1)
    reference.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    reference.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "reference.weights.h5")
    reference.save_weights(path)
    ours = conv_bn_model(BatchNormalization, seed=2)
    ours.load_weights(path)
    assert [w.path for w in ours.weights] == [w.path for w in reference.weights]
    assert_close(ours.predict(x, verbose=0), reference.predict(x, verbose=0))


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_resnet.normalization import BatchNormalization

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, (32, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 4, 32)
    errors = {}
    for synchronized in (False, True):
        trained = []
        for cls in (keras.layers.BatchNormalization, BatchNormalization):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                inputs = keras.Input((6, 6, 3))
                h = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
                h = cls(momentum=0.8, synchronized=synchronized, name="bn")(h)
                h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
                model = keras.Model(inputs, keras.layers.Dense(4)(h))
                model.compile(
                    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                )
            model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
            bn = model.get_layer("bn")
            # each replica's own copy of the moving statistics
            stats = [np.stack([v.numpy() for v in strategy.experimental_local_results(w.value)])
                     for w in (bn.moving_mean, bn.moving_variance)]
            if cls is keras.layers.BatchNormalization:
                # Keras' replicas each keep their own; ours keep their mean (a moving average is
                # linear in the batch moments): predict with Keras' model holding that mean.
                for w, s in zip((bn.moving_mean, bn.moving_variance), stats):
                    w.assign(s.mean(axis=0))
            trained.append(([w.numpy() for w in model.trainable_weights], stats, model.predict(x, verbose=0)))
        (w_ref, s_ref, p_ref), (w_ours, s_ours, p_ours) = trained

        def rel(a, b):
            return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))

        errors[f"synchronized={synchronized}"] = {
            "weights": max(rel(a, b) for a, b in zip(w_ours, w_ref)),
            "replica_stats": max(rel(a, b.mean(axis=0)) for a, b in zip(s_ours, s_ref) for a in a),
            "replicas_differ": float(np.max(np.abs(s_ref[0][0] - s_ref[0][1]))),
            "ours_differ": float(np.max(np.abs(s_ours[0][0] - s_ours[0][1]))),
            "predictions": rel(p_ours, p_ref),
        }
    print("RESULT " + json.dumps(errors))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_matches_keras():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    errors = json.loads(lines[-1][len("RESULT "):])
    for mode, err in errors.items():
        assert err["weights"] < 1e-4, (mode, err)
        assert err["replica_stats"] < 1e-5, (mode, err)
        assert err["predictions"] < 1e-4, (mode, err)
    # Keras' unsynchronized BN leaves each replica its own statistics (its variables are not
    # aggregated); ours average them, so every replica holds the mean of Keras' replicas.
    assert errors["synchronized=False"]["replicas_differ"] > 1e-3
    assert errors["synchronized=True"]["replicas_differ"] < 1e-6
    assert errors["synchronized=False"]["ours_differ"] == errors["synchronized=True"]["ours_differ"] == 0.0
