"""Model code and the recipe are backend-neutral: the same models on Keras' JAX backend.

The GPU machine this project measures on has JAX but no TensorFlow, so the models, the
training recipe (``keras_resnet.training.recipe``) and ``keras-resnet benchmark`` must run on
``KERAS_BACKEND=jax``. Each check runs in a subprocess (the backend is fixed at import)
and compares with an outside reference: keras.applications on the same backend, and the
same training step taken by the TensorFlow backend in this process.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_resnet import get_model
from keras_resnet.hardware import resolve_precision
from keras_resnet.training.recipe import compile_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_jax(code, *args, timeout=600):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


PARITY = r"""
import json, keras, numpy as np
import keras_resnet
from keras_resnet.normalization import BatchNormalization
assert keras.backend.backend() == "jax"
x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
for name in ("ResNet50", "ResNet50V2"):
    ours = getattr(keras_resnet, name)(weights=None, input_shape=(64, 64, 3))
    ref = getattr(keras.applications, name)(weights=None, input_shape=(64, 64, 3))
    ours.set_weights(ref.get_weights())
    diff = float(np.max(np.abs(ours.predict(x, verbose=0) - ref.predict(x, verbose=0))))
    print(json.dumps({"name": name, "max_abs_diff": diff,
                      # keras.applications leaves input and shortcut-pooling layers unnamed
                      "same_types": [type(l).__name__ for l in ours.layers] == [type(l).__name__ for l in ref.layers],
                      "same_names": all(a.name == b.name for a, b in zip(ours.layers, ref.layers)
                                        if not b.name.startswith(("input_layer", "max_pooling2d"))),
                      "params": ours.count_params(), "ref_params": ref.count_params(),
                      "bn_is_ours": any(isinstance(l, BatchNormalization) for l in ours.layers)}))
"""


@pytest.mark.slow
def test_models_match_keras_applications_on_the_jax_backend():
    rows = run_jax(PARITY)
    assert [r["name"] for r in rows] == ["ResNet50", "ResNet50V2"]
    for row in rows:
        assert row["same_types"] and row["same_names"] and row["params"] == row["ref_params"]
        assert row["bn_is_ours"]  # our BatchNormalization subclass, on its non-TensorFlow path
        assert row["max_abs_diff"] < 1e-5, row


STEP = r"""
import json, sys, keras, numpy as np
from keras_resnet import get_model
from keras_resnet.hardware import resolve_precision
from keras_resnet.training.recipe import compile_model
weights_path, batch_path = sys.argv[1:3]
model = get_model("ResNet20", weights=None, input_shape=(32, 32, 3), classes=10, bn_momentum=0.9)
model.load_weights(weights_path)
compile_model(model, steps_per_epoch=2, epochs=1, global_batch_size=8, lr=0.4, weight_decay=5e-4,
              jit_compile=True)
batch = np.load(batch_path)
history = model.fit(batch["x"], batch["y"], batch_size=8, epochs=1, shuffle=False, verbose=0)
np.savez(batch_path + ".out.npz", *[np.asarray(w) for w in model.get_weights()])
print(json.dumps({"loss": history.history["loss"][-1], "backend": keras.backend.backend()}))
"""


@pytest.mark.slow
def test_a_recipe_training_step_on_jax_equals_tensorflow(tmp_path):
    # Same initial weights, same two batches, same recipe (SGD momentum, the lr schedule, L2 on
    # kernels, BN moving statistics): TensorFlow (fused BN kernel) here, JAX (Keras' BN) there.
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    model = get_model("ResNet20", weights=None, input_shape=(32, 32, 3), classes=10, bn_momentum=0.9)
    weights_path = str(tmp_path / "init.weights.h5")
    model.save_weights(weights_path)
    np.savez(tmp_path / "batch.npz", x=x, y=y)
    compile_model(model, steps_per_epoch=2, epochs=1, global_batch_size=8, lr=0.4, weight_decay=5e-4)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    (row,) = run_jax(STEP, weights_path, str(tmp_path / "batch.npz"))
    assert row["backend"] == "jax"
    assert row["loss"] == pytest.approx(history.history["loss"][-1], rel=1e-4)
    jax_weights = np.load(str(tmp_path / "batch.npz") + ".out.npz")
    tf_weights = model.get_weights()
    assert len(jax_weights.files) == len(tf_weights)
    initial = keras.models.clone_model(model)
    initial.load_weights(weights_path)
    moved = 0.0
    for i, (ours, start) in enumerate(zip(tf_weights, initial.get_weights())):
        theirs = jax_weights[f"arr_{i}"]
        # atol 1e-4, a tenth of what the step moves the weights (checked below): after other
        # tests in the same process TensorFlow's fp32 kernels may differ by ~3e-5 (seen after
        # an in-process fine-tuning run), which is round-off, not a different step
        np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
        moved = max(moved, float(np.max(np.abs(ours - start))))
    assert moved > 1e-3  # the step really changed the weights


BENCH = r"""
import sys
from keras_resnet.benchmark.cli import cli_main
sys.exit(cli_main("benchmark", ["--model", "ResNet50", "--mode", "infer", "--image-size", "32",
         "--batch-size", "2", "--steps", "1", "--rounds", "1", "--precision", "auto", "--json-only"]))
"""


@pytest.mark.slow
def test_benchmark_runs_on_the_jax_backend():
    rows = run_jax(BENCH)
    assert [r["impl"] for r in rows] == ["keras_resnet", "keras.applications"]
    # ours runs what "auto" means on this machine (no GPU under JAX_PLATFORMS=cpu, so the
    # same CPU answer as in this process: bf16 on AVX-512-bf16/AMX, else fp32); the
    # reference keeps keras.applications' fp32 defaults (--reference-precision fp32)
    assert [r["precision"] for r in rows] == [resolve_precision("auto"), "fp32"]
    for row in rows:
        assert row["backend"] == "jax" and row["device"] == "cpu"
        assert row["images_per_sec"] > 0 and row["peak_gflops"] > 0
    ours, reference = (r["gflops_per_sec"] / r["images_per_sec"] for r in rows)
    assert ours == pytest.approx(reference, rel=0.01)
