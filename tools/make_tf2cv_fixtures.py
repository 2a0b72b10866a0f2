"""Write the reference logits of osmr's tf2cv CIFAR models for tests/test_cifar_weights.py.

tf2cv's models are ``tf.keras`` (Keras 2) subclassed models: run this with TensorFlow and
tf_keras installed and Keras 2 selected, importing tf2cv from a checkout of
osmr/imgclsmob (its ``tensorflow2`` folder; nothing is copied into this repository):

    TF_USE_LEGACY_KERAS=1 python tools/make_tf2cv_fixtures.py --imgclsmob CHECKOUT

It builds tf2cv's ``resnet20_cifar10`` and its PreResNet bottleneck builder at depth 20 for
CIFAR-100 (the layout of ``preresnet164bn`` / ``preresnet1001``), gives every weight the value
``tests/torch_files.tf2cv_tensor_for(weight name, shape)``, and runs the images of
``tests/fixtures/cifar_reference.npz`` (CIFAR-10 mean / std, as imgclsmob evaluates). It
checks that the file ``tests/torch_files.write_tf2cv_h5`` writes from the manifest loads
back into tf2cv's own model (``load_weights``, as tf2cv loads its published files) with the
same logits, and that its own ``save_weights`` file has the same layout. Writes
``tests/fixtures/tf2cv_reference.npz`` (logits) and ``tf2cv_reference.json`` (manifests).
"""

import argparse
import json
import os
import platform
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.torch_files import tf2cv_tensor_for, write_tf2cv_h5  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures")
CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201))


def manifest_of(net):
    return [[layer.name, [[w.name, list(w.shape)] for w in layer.weights]] for layer in net.layers]


def logits(net, images):
    mean, std = (np.asarray(v, np.float32) for v in CIFAR10)
    return np.asarray(net((images.astype(np.float32) / 255.0 - mean) / std, training=False))


def h5_layout(path):
    import h5py

    def text(names):
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    with h5py.File(path, "r") as f:
        layers = text(f.attrs["layer_names"])
        return [layers, {k: text(f[k].attrs["weight_names"]) for k in layers},
                {k: [list(f[k][n].shape) for n in text(f[k].attrs["weight_names"])] for k in layers}]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--imgclsmob", required=True, help="a checkout of osmr/imgclsmob")
    args = p.parse_args()
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("set TF_USE_LEGACY_KERAS=1: tf2cv is written for tf.keras 2")
    sys.path.insert(0, os.path.join(os.path.abspath(args.imgclsmob), "tensorflow2"))
    import tensorflow as tf
    from tf2cv.models.preresnet_cifar import get_preresnet_cifar
    from tf2cv.models.resnet_cifar import resnet20_cifar10

    images = np.load(os.path.join(OUT, "cifar_reference.npz"))["images"]
    builders = {
        "tf2cv_resnet20_cifar10": resnet20_cifar10,
        "tf2cv_preresnet20bn_cifar100": lambda: get_preresnet_cifar(classes=100, blocks=20,
                                                                    bottleneck=True),
    }
    refs, models = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, build in builders.items():
            net = build()
            net.build((1, 32, 32, 3))
            for w in net.weights:
                w.assign(tf2cv_tensor_for(w.name, w.shape))
            manifest = manifest_of(net)
            refs[key] = logits(net, images)
            ours = os.path.join(tmp, f"{key}.tf2.h5")
            write_tf2cv_h5(ours, manifest)
            own = os.path.join(tmp, f"{key}_own.tf2.h5")
            net.save_weights(own)
            assert h5_layout(ours) == h5_layout(own), key
            fresh = build()
            fresh.build((1, 32, 32, 3))
            fresh.load_weights(ours)
            np.testing.assert_array_equal(logits(fresh, images), refs[key])
            models[key] = {"manifest": manifest}
            print(key, refs[key].shape, "argmax", refs[key].argmax(1).tolist())
    np.savez_compressed(os.path.join(OUT, "tf2cv_reference.npz"),
                        **{f"{k}_logits": v.astype(np.float32) for k, v in refs.items()})
    info = {"generated_by": "tools/make_tf2cv_fixtures.py", "tensorflow": tf.__version__,
            "tf_keras": __import__("tf_keras").__version__, "python": platform.python_version(),
            "checked": "tf2cv's own models (tf.keras 2), eval mode, fp32 CPU; write_tf2cv_h5's "
                       "file has save_weights' layout and loads back to the same logits",
            "models": models}
    with open(os.path.join(OUT, "tf2cv_reference.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
