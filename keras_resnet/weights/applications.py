"""keras.applications' files: the published ImageNet files (same names, hashes and cache
folder as keras.applications), legacy ``.h5`` files loaded by layer name, and Keras 3
``.weights.h5`` files."""

from __future__ import annotations

import os

from keras_resnet.weights.download import fetch

# The files keras.applications publishes (keras/src/applications/resnet.py):
# weights name -> (md5 with top, md5 without top).
BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
WEIGHTS_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}
# Options that change the architecture away from the published one.
_STRUCTURAL = ("width_multiplier", "groups", "width_per_group", "se_ratio", "shortcut",
               "preact", "stride_on", "stride_block", "conv_bias", "stem", "avg_down")


def check_imagenet(depth: int, variant: str, options: dict, *, instead: str = "") -> None:
    """Refuse weights='imagenet' where keras.applications publishes no such file;
    ``instead`` (e.g. "; this model's published weights: weights='torchvision'") goes before
    the ``Received:`` part."""
    name = imagenet_weights_name(depth, variant)
    if variant not in ("v1", "v2") or name not in WEIGHTS_HASHES:  # v1.5 / v1d: not these files
        raise ValueError(
            "weights='imagenet' exists for variant 'v1' and 'v2' at depths 50, 101, 152 "
            f"(the keras.applications files){instead}. Received: weights='imagenet', "
            f"depth={depth}, variant={variant!r}"
        )
    changed = sorted(k for k in options if k in _STRUCTURAL)
    if changed:
        raise ValueError(
            f"weights='imagenet' needs the published architecture; these options change it: "
            f"{changed}. Received: " + ", ".join(f"{k}={options[k]!r}" for k in changed)
        )


def imagenet_weights_name(depth: int, variant: str) -> str:
    return f"resnet{depth}" + ("v2" if variant == "v2" else "")


def load_imagenet(model, *, depth: int, variant: str, include_top: bool) -> None:
    name = imagenet_weights_name(depth, variant)
    suffix = "" if include_top else "_notop"
    fname = f"{name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    path = fetch(fname, BASE_WEIGHTS_PATH + fname, WEIGHTS_HASHES[name][0 if include_top else 1])
    load_weights(model, path)


def check_weights_argument(weights) -> str | None:
    """Validate ``weights`` before anything is built; returns the file path or None."""
    if weights is None or weights == "imagenet":
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"weights must be None, 'imagenet' or a file path. Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of an existing weights file. "
            f"Received: weights={weights!r} (no such file)"
        )
    from keras_resnet.weights.checkpoint import ACCEPTED_FORMATS, file_format

    fmt = file_format(path)
    if fmt == "wrapped hdf5":  # osmr's .tf2.h5.zip: read from memory when loaded
        with _open_h5(path) as f:
            check_h5_sizes(f, path)
        return path
    if not (path.endswith(".h5") or path.endswith(".hdf5") or path.endswith(".keras")):
        raise ValueError(
            f"weights must be {ACCEPTED_FORMATS}. Received: weights={weights!r}"
            + (f" (a {fmt} file without a Keras name)" if fmt else " (none of these)")
        )
    if not path.endswith(".keras"):
        try:
            with _open_h5(path) as f:
                check_h5_sizes(f, path)
        except OSError as e:
            raise ValueError(f"weights is not a readable HDF5 file ({e}). Received: weights={weights!r}") from e
    return path


def _open_h5(path):
    """An HDF5 file, or the one ``.h5`` inside a zip wrapper (read into memory within the
    size bounds of :func:`keras_resnet.weights.checkpoint.read_wrapped`)."""
    import io
    import zipfile

    import h5py

    if zipfile.is_zipfile(path):
        from keras_resnet.weights.checkpoint import read_wrapped

        return h5py.File(io.BytesIO(read_wrapped(path)[1]), "r")
    return h5py.File(path, "r")


def check_h5_sizes(f, path: str) -> None:
    """Refuse an open HDF5 file any of whose datasets declares more bytes than
    :data:`~keras_resnet.weights.torch_pickle.MAX_COMPRESSION_RATIO` times the file's size
    (a compressed or never-written dataset: reading it would allocate that much)."""
    import h5py

    from keras_resnet.weights.torch_pickle import MAX_COMPRESSION_RATIO

    limit = max(1 << 20, MAX_COMPRESSION_RATIO * os.path.getsize(path))

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.size * obj.dtype.itemsize > limit:
            raise ValueError(
                f"weights file dataset {name!r} declares {obj.size * obj.dtype.itemsize} bytes "
                f"(shape {obj.shape}) in a {os.path.getsize(path)}-byte file; refusing to read "
                f"it. Received: weights={path!r}")

    f.visititems(visit)


def _legacy_layers(f):
    """{layer name: [datasets]} of an open legacy (tf.keras / keras.applications) HDF5
    weights file, or None if the file is not in that format. Nothing is read yet."""
    g = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in g.attrs:
        return None
    out = {}
    for lname in g.attrs["layer_names"]:
        lname = lname.decode() if isinstance(lname, bytes) else lname
        lg = g[lname]
        names = [n.decode() if isinstance(n, bytes) else n for n in lg.attrs["weight_names"]]
        if names:
            out[lname] = [lg[n] for n in names]
    return out


def load_weights(model, path: str) -> None:
    """Load a weights file into ``model``.

    Legacy ``.h5`` (keras.applications' published files, ``tf_keras`` ``save_weights``) is
    matched by layer name, so files with or without top load into models with or without
    top; every layer of the model that holds weights must be in the file with the same
    shapes (compared before any dataset is read), else a ``ValueError`` names the layer.
    Keras 3 ``.weights.h5`` / ``.keras`` files go through ``model.load_weights``. An HDF5
    file whose datasets declare far more bytes than the file holds is refused first
    (:func:`check_h5_sizes`).
    """
    if not path.endswith(".keras"):
        with _open_h5(path) as f:
            check_h5_sizes(f, path)
            stored = _legacy_layers(f)
            if stored is not None:
                _load_legacy(model, stored, path)
                return
    try:
        model.load_weights(path)
    except ValueError as e:
        raise ValueError(
            f"weights file does not match the model ({e}). Received: weights={path!r}"
        ) from e


def _load_legacy(model, stored, path):
    assignments = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in stored:
            raise ValueError(
                f"weights file has no weights for layer {layer.name!r} of model "
                f"{model.name!r}. Received: weights={path!r}"
            )
        datasets = stored[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(d.shape) for d in datasets]
        if expected != got:
            raise ValueError(
                f"weights file does not match layer {layer.name!r}: file shapes {got}, "
                f"model shapes {expected}. Received: weights={path!r}"
            )
        assignments.append((layer, datasets))
    model_names = {layer.name for layer in model.layers}
    extra = sorted(set(stored) - model_names - {"predictions"})
    if extra:
        raise ValueError(
            f"weights file has layers the model lacks, e.g. {extra[:3]}. Received: weights={path!r}"
        )
    # shapes matched: now read (bounded by check_h5_sizes), then assign all at once
    values = [(layer, [d[()] for d in datasets]) for layer, datasets in assignments]
    for layer, arrays in values:
        layer.set_weights(arrays)
