"""``evaluate()``: top-1 / top-5 of a run folder, a ``.keras`` file or a named model."""

import os

from keras_resnet.utils import check_choice, check_positive_int, fail, is_int

SPLITS = ("test", "val")


def _locate(run_or_model, dataset):
    """``(what, path, config)``: "name" | "file", the model file or name, and the run's
    config.json (or what a named model implies)."""
    from keras_resnet.specs import list_models, model_info
    from keras_resnet.training import run_folder

    path = str(run_or_model)
    if os.path.isdir(path):
        return ("file", *run_folder.run_files(path, argument="run_or_model"))
    if path.endswith(".keras") and os.path.isfile(path):
        folder = os.path.dirname(path)
        inside = os.path.isfile(os.path.join(folder, run_folder.CONFIG))
        return "file", path, run_folder.read_config(folder) if inside else {}
    if path in {m["name"] for m in list_models()}:
        info = model_info(path)
        return "name", path, dict(preprocessing=info["preprocessing"], image_size=info["input_size"],
                                  dataset=dataset)
    fail("run_or_model", path, "a run folder, a .keras file or a name from `keras-resnet list`")


def evaluate(
    run_or_model: str,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    tfds_data_dir: str | None = None,
    split: str = "test",
    batch_size: int = 64,
    preprocessing: str | dict | None = None,
    image_size: int | None = None,
) -> dict:
    """Top-1 / top-5 accuracy of a run folder, a ``.keras`` file or a named model.

    ``run_or_model``: a run folder (its ``model.keras``, dataset, image size and
    preprocessing from ``config.json``), a ``.keras`` file (inside a run folder or with
    ``preprocessing`` and ``dataset`` given), or a name from ``keras-resnet list`` with
    ImageNet weights. ``preprocessing`` (a mode, or a ``{"mean", "std"}`` on [0, 1];
    :func:`keras_resnet.preprocessing.check_preprocessing`) replaces the run's. ``split="val"`` needs a dataset with a validation split, or a run
    that held one out of train (the same images again). Returns
    ``{"top1", "top5" (more than 5 classes), "loss", "split", "dataset", "num_images"}``.
    """
    from keras_resnet.preprocessing import check_preprocessing

    check_choice("split", split, SPLITS)
    check_positive_int("batch_size", batch_size)
    if preprocessing is not None:
        preprocessing = check_preprocessing(preprocessing)
    if image_size is not None and not (is_int(image_size) and image_size >= 8):
        fail("image_size", image_size, "an integer >= 8")
    what, path, config = _locate(run_or_model, dataset)
    preprocessing = preprocessing or config.get("preprocessing")
    if preprocessing is None:
        fail("preprocessing", None, "given for a .keras file outside a run folder")
    preprocessing = check_preprocessing(preprocessing)  # the run's, as config.json holds it
    dataset = dataset or config.get("dataset")
    data_dir = data_dir or (config.get("data_dir") if not dataset or dataset == config.get("dataset") else None)
    if not dataset and not data_dir:
        fail("dataset", None, "given for a .keras file outside a run folder")
    from keras_resnet.data import load_data

    data = load_data(dataset or "digits", data_dir=data_dir, tfds_data_dir=tfds_data_dir, seed=config.get("seed", 0))
    own_data = dataset == config.get("dataset") and data_dir == config.get("data_dir")
    if split == "val" and not data.num_val and own_data and config.get("val_fraction"):
        # the validation split the run held out of train (same fraction, same seed)
        data = data.with_validation_holdout(config["val_fraction"], seed=config.get("seed", 0))
    if split == "val" and not data.num_val:
        fail("split", split, f"'test': {data.name} has no validation split")
    import keras

    from keras_resnet.saving import register_serializables

    register_serializables()  # keras_resnet's layers and recipe, whoever imported Keras first
    if what == "name":
        from keras_resnet import get_model

        net = get_model(path, weights="imagenet")
    else:
        net = keras.saving.load_model(path, compile=False)
    classes = int(net.output_shape[-1])
    if classes != len(data.class_names):
        fail("dataset", dataset, f"a dataset of {classes} classes, as the model predicts "
                                 f"({data.name} has {len(data.class_names)})")
    image_size = image_size or config.get("image_size") or net.input_shape[1] or data.image_size
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="top1")]
    if classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    net.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=metrics)
    # the run's augmentation decides the eval crop ("imagenet": the center crop), as in its test
    eval_data = data.eval_dataset(split, batch_size, image_size=image_size, preprocessing=preprocessing,
                                  augmentation=config.get("augmentation"))
    result = {k: float(v) for k, v in net.evaluate(eval_data, return_dict=True, verbose=0).items()}
    result.update(split=split, dataset=data.name, num_images=data.num_test if split == "test" else data.num_val)
    return result
