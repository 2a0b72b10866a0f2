import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# keras_resnet before anything imports TensorFlow, as a user's `import keras_resnet` does:
# its TensorFlow settings (oneDNN on x86-64, see keras_resnet/__init__.py) then hold here too.
import keras_resnet  # noqa: E402,F401
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def randomize_bn_statistics(model, rng):
    """Give every BatchNormalization non-trivial gamma/beta/moving statistics, so that
    comparisons exercise them (fresh layers have mean 0 / variance 1)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, n).astype("float32"),
                rng.uniform(-0.2, 0.2, n).astype("float32"),
                rng.uniform(-0.2, 0.2, n).astype("float32"),
                rng.uniform(0.5, 1.5, n).astype("float32"),
            ])


def randomize_batch_norm(model, seed=0):
    """Non-trivial gamma, beta and moving statistics (matched by variable name, any dtype
    policy), so that folding BN changes the weights; ``seed`` fixes them."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(0.5, 1.5, c), "beta": rng.normal(0, 0.3, c),
                      "moving_mean": rng.normal(0, 0.3, c), "moving_variance": rng.uniform(0.5, 2.0, c)}
            layer.set_weights([values[w.name] for w in layer.weights])


def copy_weights_by_name(src, dst):
    """Copy weights layer by layer, matched by name (fails if a name is missing)."""
    for layer in dst.layers:
        if layer.weights:
            layer.set_weights(src.get_layer(layer.name).get_weights())


def noise_folder(root, n=100, classes=4, size=32):
    """A folder dataset of random RGB PNGs (``root/<class>/<i>.png``)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def free_ports(n):
    """``n`` TCP ports on 127.0.0.1 free a moment ago (for multi-worker TF_CONFIG clusters)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache in ``tmp_path/models`` and no network: any download fails."""
    import urllib.request

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "models")

    def refuse(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return tmp_path / "models"


def cache_chenyaofo(data, cache, monkeypatch, **changes):
    """chenyaofo's ResNet-20 ``data`` set ("cifar10" / "cifar100") in the Keras cache ``cache``
    under its published name, in its real layout, holding the deterministic tensors of
    ``tests/fixtures/cifar_reference.json`` (whose logits chenyaofo's own model code gave);
    the file's hash put into the table, and any ``changes`` to the set's row. Returns the row."""
    import dataclasses
    import json

    from keras_resnet import weights
    from keras_resnet.weights import published
    from tests.torch_files import state_from_manifest, write_torch_zip

    info = json.load(open(os.path.join(os.path.dirname(__file__), "fixtures", "cifar_reference.json")))
    state = state_from_manifest(info["models"][f"chenyaofo_{data}_resnet20"]["manifest"])
    ws = published.find_set("ResNet20", f"chenyaofo:{data}")
    path = str(cache / ws.file_name)
    if not os.path.exists(path):
        write_torch_zip(path, state)
    patched = dataclasses.replace(ws, hash_prefix=weights.file_hash(path)[:8], **changes)
    monkeypatch.setattr(published, "SETS", tuple(patched if s.name == ws.name and s.model == ws.model else s
                                                  for s in published.SETS))
    return patched
