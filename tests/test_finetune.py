"""Fine-tuning from pretrained weights (``train(weights=...)``, issue 23).

The pretrained file is written here with h5py alone, in the legacy layout keras.applications
publishes (``layer_names`` / ``weight_names`` attributes), from random arrays: every check
compares the trained model with the FILE's own tensors, read back with h5py, never with
what the package loaded.
"""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from keras_resnet import cli, get_model, training
from keras_resnet.training.run_folder import read_meta
from tests.conftest import noise_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = dict(width_multiplier=0.25)
SMALL = dict(model_options=OPTIONS, precision="fp32", export=False, verbose=0, deterministic=True)


def write_pretrained(path, *, classes=10, seed=0, options=OPTIONS):
    """A legacy Keras .h5 of a ResNet-20 (width 0.25) holding random arrays, by layer name."""
    model = get_model("ResNet20", classes=classes, **options)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        named = [layer for layer in model.layers if layer.weights]
        f.attrs["layer_names"] = [layer.name.encode() for layer in named]
        for layer in named:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for w, n in zip(layer.weights, names):
                value = rng.normal(0, 0.1, size=w.shape).astype("float32")
                if "variance" in n:
                    value = np.abs(value) + 0.5
                group.create_dataset(n, data=value)
    return path


def file_tensors(path):
    """``{(layer, weight name): array}`` as stored in the file."""
    out = {}
    with h5py.File(path, "r") as f:
        for layer in f.attrs["layer_names"]:
            layer = getattr(layer, "decode", lambda: layer)()
            for name in f[layer].attrs["weight_names"]:
                name = getattr(name, "decode", lambda: name)()
                out[(layer, name.split("/", 1)[1].split(":")[0])] = f[layer][name][()]
    return out


def model_tensors(path):
    model = keras.saving.load_model(path, compile=False)
    return {(layer.name, w.name): w.numpy() for layer in model.layers for w in layer.weights}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return write_pretrained(tmp_path_factory.mktemp("weights") / "resnet20.h5")


# ------------------------------------------------------------------ refused before any work


@pytest.mark.parametrize("option, flag", [
    ("weights=imagenet", "use --weights"), ("classes=5", "train sets it from the data"),
    ("input_shape=[64,64,3]", "use --image-size"), ("include_top=false", "train sets it from the data"),
    ("synchronized_bn=true", "use --sync-bn"), ("zero_init_residual=true", "use --zero-init-residual"),
])
def test_model_option_that_train_owns_is_refused_before_any_work(tmp_path, capsys, option, flag):
    output = tmp_path / "run"
    assert cli.main(["train", "--model-option", option, "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model-option must be free of" in err[0] and flag in err[0], err
    assert "Traceback" not in err[0]
    assert not output.exists()
    key = option.split("=")[0]
    with pytest.raises(ValueError, match=f"model_options must be free of '{key}'"):
        training.train(model_options={key: 1}, output=str(output))
    assert not output.exists()


def test_fine_tuning_keywords_need_weights_and_weights_must_exist(tmp_path):
    with pytest.raises(ValueError, match="freeze_bn must be left unset without weights"):
        training.train(freeze_bn=True, output=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="Received: weights='no-such-file.h5'"):
        training.train(weights="no-such-file.h5", output=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="keras.applications publishes no CIFAR ResNets"):
        training.train("ResNet20", weights="imagenet", output=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="is not a published set for ResNet20"):
        training.train("ResNet20", weights="timm:resnet50.a1_in1k", output=str(tmp_path / "r"))
    assert cli.main(["train", "--weights", "none", "--finetune", "head", "--output", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------ what loads, phases


def test_phase_one_trains_the_fresh_head_alone_on_the_files_backbone(tmp_path, pretrained):
    output = tmp_path / "run"
    training.train("ResNet20", weights=str(pretrained), epochs=1, finetune="two-phase", head_epochs=1,
                   output=str(output), **SMALL)
    stored, trained = file_tensors(pretrained), model_tensors(output / "model.keras")
    backbone = [k for k in stored if k[0] != "predictions"]
    assert backbone and len(backbone) + 2 == len(stored)
    for key in backbone:  # kernels, gamma/beta and BN statistics: bit for bit the file's
        np.testing.assert_array_equal(trained[key], stored[key], err_msg=str(key))
    # the head is the model's own, not the file's (same shape here: 10 digits, 10 in the file)
    assert trained[("predictions", "kernel")].shape == stored[("predictions", "kernel")].shape
    assert not np.allclose(trained[("predictions", "kernel")], stored[("predictions", "kernel")])
    config = json.loads((output / "config.json").read_text())
    assert config["pretrained"]["tensors_loaded"] == len(backbone)
    assert config["pretrained"]["fresh"] == ["predictions/kernel", "predictions/bias"]
    assert config["weights"] == str(pretrained) and config["phases"][0]["trains"] == "head"


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_phase_two_trains_the_backbone_and_bn_follows_freeze_bn(tmp_path, pretrained, freeze_bn):
    data_dir = noise_folder(tmp_path / "noise")  # 72 train images: batch 8, 9 steps
    output = tmp_path / "run"
    training.train("ResNet20", weights=str(pretrained), data_dir=str(data_dir), epochs=2, finetune="two-phase",
                   head_epochs=1, freeze_bn=freeze_bn, output=str(output), **SMALL)
    stored, trained = file_tensors(pretrained), model_tensors(output / "model.keras")
    assert trained[("predictions", "kernel")].shape == (16, 4)  # rebuilt for 4 classes
    convs = [k for k in stored if k[0].endswith("_conv")]
    assert all(not np.array_equal(trained[k], stored[k]) for k in convs)
    bns = [k for k in stored if k[0].endswith("_bn")]
    same = [np.array_equal(trained[k], stored[k]) for k in bns]
    assert all(same) if freeze_bn else not any(same)
    config = json.loads((output / "config.json").read_text())
    assert config["batch_size"] == 8 and config["steps_per_epoch"] == 9


def test_history_logs_and_draws_the_learning_rate_of_both_phases(tmp_path, pretrained, monkeypatch):
    """Each phase compiles its own optimizer and cosine schedule, restarting at its first
    epoch. history.csv's ``lr`` is the rate of each epoch's last step and history.png's
    learning-rate line has one point per step of both phases: both equal Keras' own
    ``CosineDecay`` (SGDR's cosine, Loshchilov & Hutter 2017, without restarts or floor) from
    the peak config.json gives each phase (lr per 256 images x global batch / 256)."""
    from keras_resnet.training import run_folder as rf

    figures = []
    plot = rf.plot_history
    monkeypatch.setattr(rf, "plot_history", lambda *a, **k: figures.append(plot(*a, **k)) or figures[-1])
    data_dir = noise_folder(tmp_path / "noise")  # 72 train images: batch 8, 9 steps
    output = tmp_path / "run"
    training.train("ResNet20", weights=str(pretrained), data_dir=str(data_dir), epochs=2, finetune="two-phase",
                   head_epochs=1, finetune_lr=0.05, output=str(output), **SMALL)
    config = json.loads((output / "config.json").read_text())
    steps, batch = config["steps_per_epoch"], config["global_batch_size"]
    assert (steps, config["schedule"]) == (9, "cosine")
    assert [(p["first_epoch"], p["warmup_epochs"]) for p in config["phases"]] == [(0, 0.0), (1, 0.0)]
    peaks = [config["lr"] * batch / 256, 0.05 * batch / 256]  # the head's lr, then finetune_lr
    expected = [float(keras.optimizers.schedules.CosineDecay(peak, decay_steps=steps)(step))
                for peak in peaks for step in range(steps)]
    history = training.read_history(output / "history.csv")
    np.testing.assert_allclose(history["lr"], [expected[steps - 1], expected[2 * steps - 1]], rtol=1e-6)
    (figure,) = figures
    lr = figure.axes[2]
    assert lr.get_title() == "learning rate"
    curve, *marks = lr.get_lines()
    np.testing.assert_allclose(curve.get_xdata(), [e + s / steps for e in (0, 1) for s in range(steps)], rtol=1e-6)
    np.testing.assert_allclose(curve.get_ydata(), expected, rtol=1e-6)
    assert [list(m.get_xdata()) for m in marks] == [[1, 1]]  # where phase 2 begins
    assert [t.get_text() for t in lr.texts] == ["phase 2"]
    assert (output / "history.png").stat().st_size > 0


# ------------------------------------------------------------------------------- resume


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-m", "keras_resnet", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_at(proc, backup, position):
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        meta = read_meta(backup)
        if meta and (meta["epoch"], meta["step"]) >= position:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return read_meta(backup)


@pytest.mark.slow
def test_sigkill_in_each_phase_resumes_to_the_uninterrupted_weights(tmp_path, pretrained):
    data_dir = noise_folder(tmp_path / "noise", n=200)  # 144 train images: batch 14, 10 steps
    args = ["train", "--model", "ResNet20", "--weights", str(pretrained), "--data-dir", str(data_dir),
            "--model-option", "width_multiplier=0.25", "--epochs", "3", "--finetune", "two-phase",
            "--head-epochs", "1",
            "--backup-steps", "2", "--no-export", "--verbose", "2", "--deterministic"]
    reference = _run([*args, "--output", str(tmp_path / "reference")], tmp_path)
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    run = tmp_path / "run"
    backup = run / "backup" / "state.npz"
    meta = _kill_at(_run([*args, "--output", str(run)], tmp_path), backup, (0, 4))
    assert meta is not None and meta["phase"] == 0 and meta["epoch"] == 0, meta
    meta = _kill_at(_run([*args, "--output", str(run)], tmp_path), backup, (1, 4))
    assert meta is not None and meta["phase"] == 1 and meta["epoch"] >= 1, meta
    assert not (run / "metrics.json").exists()
    resumed = _run([*args, "--output", str(run)], tmp_path)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "the backup's trained weights (the pretrained file is not read again;" in out, out
    ours, theirs = model_tensors(run / "model.keras"), model_tensors(tmp_path / "reference" / "model.keras")
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=str(key))


# ------------------------------------------------------------- evaluate and the export


def test_evaluate_and_the_export_use_the_runs_input(tmp_path, pretrained, monkeypatch):
    from keras_resnet.export import saved_model_metadata

    monkeypatch.chdir(tmp_path)  # the export goes to saved_models/<run name>/<version>
    output = tmp_path / "run"
    training.train("ResNet20", weights=str(pretrained), epochs=1, finetune="head",
                   output=str(output), **dict(SMALL, export=True))
    metrics = json.loads((output / "metrics.json").read_text())
    config = json.loads((output / "config.json").read_text())
    # evaluate reads the run's image size, preprocessing and transform: the run's own test top-1
    assert training.evaluate(str(output))["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    served = saved_model_metadata(metrics["export_path"])
    assert served["preprocessing"] == config["preprocessing"] == "tf"  # the weights' model: a CIFAR ResNet
    assert served["image_size"] == [32, 32] and config["image_size"] == 32  # the weights' eval size
    assert served["eval_transform"]["crop_fraction"] == config["eval_transform"]["crop_fraction"] == 1.0


# --------------------------------------------------------------------------------- tune


def test_tune_searches_the_fine_tuning_lr_from_the_files_backbone(tmp_path):
    from keras_resnet.tuning import search
    from keras_resnet.tuning.hypermodel import FINETUNE_LR_RANGE

    weights = write_pretrained(tmp_path / "full.h5", options={})
    result = search("digits", weights=str(weights), model="ResNet20", max_trials=1, epochs=1, steps_per_epoch=2,
                    precision="fp32", output=str(tmp_path / "search"), verbose=0)
    values = result["best"]["hyperparameters"]
    assert (values["depth"], values["variant"], values["width_multiplier"]) == (20, "v1", 1.0)
    assert FINETUNE_LR_RANGE[0] <= values["lr"] <= FINETUNE_LR_RANGE[1]
    from keras_resnet.tuning.tuner import CONFIG

    config = json.loads((tmp_path / "search" / CONFIG).read_text())
    assert config["weights"] == str(weights) and config["space"]["lr"]["range"] == list(FINETUNE_LR_RANGE)
    # every trial starts from the file: a model built for a trial holds its backbone
    net = result["hypermodel"].build_model(values)
    stored = file_tensors(weights)
    for layer in net.layers:
        for w in layer.weights:
            if layer.name != "predictions":
                np.testing.assert_array_equal(w.numpy(), stored[(layer.name, w.name)])
    with pytest.raises(ValueError, match="space must not hold \\['depth'\\] when fine-tuning"):
        search("digits", weights=str(weights), space={"depth": 32}, output=str(tmp_path / "other"))


def test_the_input_follows_akamasters_set_by_name_or_by_file():
    from keras_resnet.training.finetune import weights_input

    fixture = os.path.join(REPO, "tests", "fixtures", "akamaster", "resnet20-12fca82f.th")
    for weights in ("akamaster", fixture):
        facts = weights_input("ResNet20", weights)
        # akamaster's trainer.py: ToTensor + Normalize(ImageNet mean / std), 32x32 CIFAR-10, no crop
        assert (facts["preprocessing"], facts["image_size"], facts["trained_on"]) == ("torch", 32, "cifar10")
        assert facts["eval_transform"]["crop_fraction"] == 1.0 and facts["published_classes"] == 10
        assert facts["options"]["zero_pad_side"] == "both"  # resnet.py's option A pads both sides


# ---------------------------------------------------------- replicas and workers (item 5)

AKAMASTER = os.path.join(REPO, "tests", "fixtures", "akamaster", "resnet20-12fca82f.th")
# One process of a distributed fine-tuning run from akamaster's real file. It records every
# variable on every replica of this process (``experimental_local_results``) as fit starts,
# i.e. before the first step, and again after the run (optimizer slots included).
REPLICA_RUN = """
import sys
import numpy as np
import tensorflow as tf
strategy, data_dir, output, record = sys.argv[1:5]
if strategy == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_resnet import training
from keras_resnet.training.fit import FitJob

def replicas(variables, dist):
    return {v.path: np.stack([x.numpy() for x in dist.experimental_local_results(v.value)]) for v in variables}

fit, seen = FitJob.fit, {}
def recording_fit(job, net, *args, **kwargs):
    seen["before"] = replicas(net.variables, job.dist)
    result = fit(job, net, *args, **kwargs)
    seen["after"] = replicas(net.variables + net.optimizer.variables, job.dist)
    return result
FitJob.fit = recording_fit
training.train("ResNet20", weights=sys.argv[5], data_dir=data_dir, epochs=2, finetune="two-phase", head_epochs=1,
               freeze_bn=False, batch_size=8, strategy=strategy, precision="fp32", deterministic=True,
               export=False, verbose=0, output=output)
np.savez(record, **{f"{when}:{path}": value for when in seen for path, value in seen[when].items()})
"""


def akamaster_tensors():
    """akamaster's state dict, read with :func:`tests.torch_files.read_torch_legacy`, by the
    Keras variable path each tensor belongs to (``conv2_block1_1_bn/moving_mean``): his
    ``layer{s}.{b}.conv{k}`` / ``bn{k}`` are stage s+1, block b+1, unit k; kernels go from
    PyTorch's (out, in, h, w) / (out, in) to Keras' (h, w, in, out) / (in, out)."""
    from tests.torch_files import read_torch_legacy

    out = {}
    for name, value in read_torch_legacy(AKAMASTER)["state_dict"].items():
        parts = name.removeprefix("module.").split(".")
        if parts[0] == "linear":
            out[f"predictions/{dict(weight='kernel', bias='bias')[parts[1]]}"] = value.T
            continue
        prefix, unit = ("conv1", parts[0]) if len(parts) == 2 else \
            (f"conv{int(parts[0][5:]) + 1}_block{int(parts[1]) + 1}_{parts[2][-1]}", parts[2])
        kind = "conv" if unit.startswith("conv") else "bn"
        leaf = {"weight": "kernel" if kind == "conv" else "gamma", "bias": "beta", "running_mean": "moving_mean",
                "running_var": "moving_variance"}[parts[-1]]
        out[f"{prefix}_{kind}/{leaf}"] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
    return out


def _replica_runs(tmp_path, strategy, processes):
    """Run :data:`REPLICA_RUN` in ``processes`` processes (a TF_CONFIG cluster when several);
    ``[{"before" | "after": {path: array stacked over this process's replicas}}]``."""
    from tests.conftest import free_ports

    data_dir = noise_folder(tmp_path / "noise")  # 72 train images of 4 classes at 32 px
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(processes)]}
    procs = []
    for index in range(processes):
        if processes > 1:
            env = dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", REPLICA_RUN, strategy, str(data_dir), str(tmp_path / "run"),
             str(tmp_path / f"record{index}.npz"), AKAMASTER],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    records = []
    for index in range(processes):
        with np.load(tmp_path / f"record{index}.npz") as saved:
            record = {"before": {}, "after": {}}
            for key in saved.files:
                when, path = key.split(":", 1)
                record[when][path] = saved[key]
            records.append(record)
    return records


def _check_replicas(replicas):
    """``replicas``: ``[{"before", "after"}]``, each value stacked over replicas: every replica
    starts from akamaster's tensors, bit for bit, and all end equal to each other."""
    stored = akamaster_tensors()
    before = {path: np.concatenate([r["before"][path] for r in replicas]) for path in replicas[0]["before"]}
    after = {path: np.concatenate([r["after"][path] for r in replicas]) for path in replicas[0]["after"]}
    backbone = [p for p in stored if not p.startswith("predictions/")]
    assert len(backbone) == 95 and set(backbone) <= set(before)
    for path in backbone:  # every replica, every variable: the file's tensor
        for copy in before[path]:
            np.testing.assert_array_equal(copy, stored[path], err_msg=path)
    head = before["predictions/kernel"]
    assert head.shape[-1] == 4 and all(np.array_equal(copy, head[0]) for copy in head)  # fresh, one for all
    for path, copies in after.items():  # weights, BN statistics, seeds, momentum: one value on all replicas
        for copy in copies[1:]:
            np.testing.assert_array_equal(copy, copies[0], err_msg=path)
    # phase 2 moved the backbone and, BatchNorm adapting, its moving statistics
    for path in ("conv4_block3_2_conv/kernel", "conv1_bn/moving_mean", "conv3_block2_1_bn/moving_variance"):
        assert not np.array_equal(after[path][0], stored[path]), path
    return before, after


@pytest.mark.slow
def test_mirrored_replicas_start_from_the_file_and_stay_identical(tmp_path):
    (record,) = _replica_runs(tmp_path, "mirrored", 1)
    assert record["before"]["conv1_conv/kernel"].shape[0] == 2  # two logical CPUs: two replicas
    _check_replicas([record])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["replicas"] == 2 and config["strategy_class"] == "MirroredStrategy"


@pytest.mark.slow
def test_two_workers_start_from_the_file_and_stay_identical(tmp_path):
    records = _replica_runs(tmp_path, "multi-worker", 2)
    assert all(r["before"]["conv1_conv/kernel"].shape[0] == 1 for r in records)  # one replica a worker
    _check_replicas(records)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["replicas"] == 2 and config["strategy_class"] == "CollectiveAllReduceStrategy"


def test_recipe_line_names_phase_two_only_where_there_is_one():
    from types import SimpleNamespace

    from keras_resnet.training.finetune import default_finetune

    def reason(finetune, freeze_bn):
        config = SimpleNamespace(epochs=4, finetune=finetune, head_epochs=None, freeze_bn=freeze_bn, weights="w.h5")
        return default_finetune(config)["reason"]

    assert reason("full", True) == "fine-tuning w.h5 (full, BatchNorm frozen: as asked)"
    assert reason("full", False) == "fine-tuning w.h5 (full, BatchNorm adapting: as asked)"  # one phase
    assert reason("two-phase", False) == "fine-tuning w.h5 (two-phase, BatchNorm adapting in phase 2: as asked)"
    assert reason("head", None) == "fine-tuning w.h5 (head)"  # the backbone never trains
    # left to the recipe, BatchNorm adapts at any batch (BENCHMARKS.md: frozen lost at 11 and 128)
    assert reason("full", None).startswith("fine-tuning w.h5 (full, BatchNorm adapting: the default")


# ------------------------------------------------------- a set normalised with its own mean / std


@pytest.mark.slow  # two short runs of a full-width ResNet-20 and a SavedModel: about a minute
def test_chenyaofo_set_fine_tunes_evaluates_exports_and_resumes_with_its_mean_std(
        tmp_path, monkeypatch, offline, capsys):
    """chenyaofo's CIFAR-10 ResNet-20 normalises with CIFAR-10's mean / std, which no mode has
    (train refused it before). The run records them, and its test split, ``evaluate`` and the
    export all normalise as torchvision's ``Normalize`` does (tests/fixtures/normalize_reference:
    the test images of the folder are its four images, normalised by torchvision itself).
    A resume reads the recorded normalisation back: with the set's row changed meanwhile, the
    run continues with what it trained with instead of re-deriving it from the name."""
    import tensorflow as tf
    from PIL import Image

    from keras_resnet.export import saved_model_metadata
    from keras_resnet.weights import published
    from tests.conftest import cache_chenyaofo

    ref = np.load(os.path.join(REPO, "tests", "fixtures", "normalize_reference.npz"))
    images, normalised = ref["images"], ref["cifar10_normalized"]  # torchvision, CIFAR-10's mean / std
    labels = np.array([0, 0, 1, 2])
    data_dir = tmp_path / "data"
    noise_folder(data_dir / "train", n=30, classes=3)
    for i, (image, label) in enumerate(zip(images, labels)):
        (data_dir / "test" / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data_dir / "test" / f"class{label}" / f"{i}.png")
    cache_chenyaofo("cifar10", offline, monkeypatch)
    output = tmp_path / "run"
    args = dict(weights="chenyaofo:cifar10", data_dir=str(data_dir), epochs=1, output=str(output),
                precision="fp32", export=False, verbose=0, deterministic=True)
    training.train("ResNet20", **args)
    mean_std = {"mean": list(published.CIFAR10_MEAN), "std": list(published.CIFAR10_STD)}
    config = json.loads((output / "config.json").read_text())
    assert config["preprocessing"] == mean_std and config["image_size"] == 32
    assert "mean 0.4914/0.4822/0.4465 std 0.2023/0.1994/0.201 preprocessing" in capsys.readouterr().out

    net = keras.saving.load_model(output / "model.keras", compile=False)
    expected = keras.ops.convert_to_numpy(net(normalised, training=False))
    # evaluate: its loss over the four test images is the model's on torchvision's tensors
    # (cross-entropy, plus the L2 weight decay the run's kernels carry into every loss)
    result = training.evaluate(str(output))
    assert result["num_images"] == 4
    loss = -np.mean(np.log(expected[np.arange(4), labels])) + sum(float(v) for v in net.losses)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    # the export bakes the same normalisation: raw pixels in, the model's probabilities out
    export_dir = tmp_path / "exports"
    assert cli.main(["export", "--run", str(output), "--export-dir", str(export_dir), "--version", "1",
                     "--precision", "fp32", "--no-fold-bn", "--no-warmup"]) == 0
    assert saved_model_metadata(str(export_dir / "1"))["preprocessing"] == mean_std
    served = tf.saved_model.load(str(export_dir / "1")).signatures["predict_pixels"]
    probabilities = served(pixels=tf.constant(images.astype("float32")))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)

    # a resume (stopped after its last backup, before metrics.json) keeps the recorded mean / std
    metrics = json.loads((output / "metrics.json").read_text())
    os.remove(output / "metrics.json")
    cache_chenyaofo("cifar10", offline, monkeypatch, transform=published.cifar_transform(
        published.CIFAR100_MEAN, published.CIFAR100_STD))
    capsys.readouterr()
    training.train("ResNet20", **args)
    assert "Resuming" in capsys.readouterr().out
    assert json.loads((output / "config.json").read_text())["preprocessing"] == mean_std
    resumed = json.loads((output / "metrics.json").read_text())
    assert resumed["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)
