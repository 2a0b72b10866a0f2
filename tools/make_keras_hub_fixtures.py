"""Reference outputs of keras-hub ``ResNetBackbone`` presets for tests/test_weight_conversion.py.

Run with an interpreter that has keras, a backend and keras-hub (never a dependency of the
package or its tests):

    python tools/make_keras_hub_fixtures.py

For two configurations that are ours (v1 basic blocks with the 7x7 stem = ResNet18V1_5;
the "_vd" bottleneck blocks with the 3x3 deep stem = ResNet26D) it builds the real
backbone, gives every variable the value of ``tests/torch_files.keras_tensor_for``, runs the
input of ``weight_reference.npz`` and writes the feature maps, the preset's real
``config.json`` and the layout of its ``model.weights.h5`` (group, layer name, shapes).
"""

import json
import os
import shutil
import sys
import tempfile

import h5py
import keras
import keras_hub
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.torch_files import keras_tensor_for  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures")
STAGES = dict(stackwise_num_filters=[64, 128, 256, 512], stackwise_num_strides=[1, 2, 2, 2])
CONFIGS = {
    "keras_hub_resnet18": ("ResNet18V1_5", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_blocks=[2, 2, 2, 2],
        block_type="basic_block", **STAGES)),
    "keras_hub_resnet26_vd": ("ResNet26D", dict(
        input_conv_filters=[32, 32, 64], input_conv_kernel_sizes=[3, 3, 3],
        stackwise_num_blocks=[2, 2, 2, 2], block_type="bottleneck_block_vd", **STAGES)),
}


def layout(weights_file):
    rows = []
    with h5py.File(weights_file, "r") as f:
        for generic, group in f["layers"].items():
            v = group["vars"]
            if len(v):
                rows.append([generic, v.attrs["name"], len(v), [list(v[str(i)].shape) for i in range(len(v))]])
    return rows


def main():
    x = np.load(os.path.join(OUT, "weight_reference.npz"))["input_nchw"].transpose(0, 2, 3, 1)
    size = x.shape[1]
    arrays, info = {}, {"versions": {"keras": keras.__version__, "keras_hub": keras_hub.__version__,
                                     "backend": keras.backend.backend()}, "models": {}}
    for key, (ours, config) in CONFIGS.items():
        backbone = keras_hub.models.ResNetBackbone(image_shape=(size, size, 3), **config)
        for layer in backbone.layers:
            for index, variable in enumerate(layer.weights):
                variable.assign(keras_tensor_for(layer.name, index, variable.shape))
        arrays[f"{key}_features"] = np.asarray(backbone(x, training=False))
        with tempfile.TemporaryDirectory() as d:
            backbone.save_to_preset(d)
            os.makedirs(os.path.join(OUT, key), exist_ok=True)
            shutil.copy(os.path.join(d, "config.json"), os.path.join(OUT, key, "config.json"))
            rows = layout(os.path.join(d, "model.weights.h5"))
        info["models"][key] = {"model": ours, "layout": rows}
        print(key, arrays[f"{key}_features"].shape, len(rows), "layers with variables", flush=True)
    np.savez_compressed(os.path.join(OUT, "keras_hub_reference.npz"), **arrays)
    with open(os.path.join(OUT, "keras_hub_reference.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
