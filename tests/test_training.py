"""Training: recipe pieces against the papers and numpy, distribution against one device,
exact resume against an uninterrupted run, and the default job against its promise.

Runs that configure devices (logical CPUs, TF_CONFIG) or get killed happen in
subprocesses: TensorFlow fixes its devices when it first initialises.
"""

import csv
import glob
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from keras_resnet import cli, training
from tests.conftest import free_ports as _free_ports, noise_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny CIFAR ResNet-20 (4/8/16 filters) on 32x32 digits: ~45 steps an epoch.
TINY = [
    "train", "--model", "ResNet20", "--model-option", "width_multiplier=0.25", "--image-size", "32",
    "--batch-size", "32", "--epochs", "2", "--no-export", "--verbose", "2", "--deterministic",
]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def _cli(args, cwd, timeout=300, **env):
    return subprocess.run(
        [sys.executable, "-m", "keras_resnet", *args],
        cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout,
    )


def _python(code, cwd, timeout=300, **env):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


# ----------------------------------------------------------------------- recipe pieces


def test_step_schedule_follows_the_paper():
    # He et al. 2015, sec. 4.2: lr 0.1 at batch 128, /10 at 32k and 48k of 64k iterations.
    schedule = training.ResNetLearningRate(0.2 * 128 / 256, 64_000, schedule="step")
    got = [float(schedule(s)) for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_cosine_warmup_and_paper_warmup_match_their_formulas():
    schedule = training.ResNetLearningRate(0.4, 1000, schedule="cosine", warmup_steps=100)
    for step in (0, 50, 99):
        np.testing.assert_allclose(float(schedule(step)), 0.4 * (step + 1) / 100, rtol=1e-6)
    for step in (100, 400, 999):
        expected = 0.5 * 0.4 * (1 + math.cos(math.pi * (step - 100) / 900))
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5, atol=1e-7)
    held = training.ResNetLearningRate(0.1, 1000, hold_low=True)
    assert np.isclose(float(held(0)), 0.01)  # the paper's 0.01 for ResNet-110
    held.holding.assign(0.0)
    assert np.isclose(float(held(0)), 0.1)


def test_weight_decay_is_l2_on_kernels_only():
    model = keras.Sequential([
        keras.Input((6, 6, 3)),
        keras.layers.Conv2D(4, 3, use_bias=True),
        keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    assert training.apply_weight_decay(model, 1e-2) == 2
    kernels = [model.layers[0].kernel.numpy(), model.layers[3].kernel.numpy()]
    expected = 1e-2 / 2 * sum(float(np.sum(k.astype(np.float64) ** 2)) for k in kernels)
    model(np.zeros((1, 6, 6, 3), "float32"))
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
    exempt = [model.layers[0].bias, model.layers[1].gamma, model.layers[1].beta, model.layers[3].bias]
    assert all(v.regularizer is None for v in exempt)


def test_label_smoothing_loss_equals_keras_categorical():
    rng = np.random.default_rng(0)
    probs = keras.ops.softmax(rng.normal(size=(8, 10)).astype("float32"))
    labels = rng.integers(0, 10, size=8)
    ours = training.SparseCrossentropyWithSmoothing(0.1)(labels, probs)
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(10)[labels], probs)
    np.testing.assert_allclose(float(ours), float(reference), rtol=1e-6)


def test_compile_model_scales_lr_with_the_global_batch():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="softmax")])
    lr = training.compile_model(model, steps_per_epoch=10, epochs=2, global_batch_size=128, lr=0.2)
    assert np.isclose(float(lr(0)), 0.1)  # 0.2 per 256 images -> the paper's 0.1 at batch 128
    assert model.optimizer.momentum == 0.9 and not model.optimizer.nesterov


# ------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(model="ResNet9000"), "ResNet9000"),
        (dict(epochs=0), "epochs=0"),
        (dict(batch_size=-4), "batch_size=-4"),
        (dict(strategy="gpus"), "strategy='gpus'"),
        (dict(precision="fp8"), "precision='fp8'"),
        (dict(lr=-0.1), "lr=-0.1"),
        (dict(label_smoothing=1.5), "label_smoothing=1.5"),
        (dict(schedule="linear"), "schedule='linear'"),
        (dict(warmup_epochs="soon"), "warmup_epochs='soon'"),
        (dict(augmentation="mixup"), "augmentation='mixup'"),
        (dict(image_size=4), "image_size=4"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path, kwargs, needle):
    output = tmp_path / "run"
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        training.train(output=str(output), **kwargs)
    assert not output.exists()


def test_cli_reports_bad_arguments_with_status_2(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "0", "--output", str(tmp_path / "r")]) == 2
    assert "--epochs=0" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "r").exists()


def test_config_is_one_record_written_whole_and_compared_to_resume():
    from keras_resnet import data
    from keras_resnet.training.config import AUGMENTATIONS, TrainConfig

    config = TrainConfig.from_kwargs(model="ResNet56", epochs=2, model_options=dict(width_multiplier=0.5))
    assert (config.network.model, config.recipe.epochs, config.epochs) == ("ResNet56", 2, 2)
    written = json.loads(json.dumps(config.to_json()))  # what config.json holds
    assert TrainConfig.from_json(written) == config
    assert config.changes(written) == {}
    assert config.changes({**written, "lr": 0.3}) == {"lr": (0.3, None)}
    assert config.changes({**written, "verbose": 0}) == {}  # display options do not define a run
    with pytest.raises(ValueError, match=r"--batch-size must be an integer >= 1. Received: --batch-size=0"):
        TrainConfig.from_kwargs(flags=True, batch_size=0)
    assert AUGMENTATIONS is data.AUGMENTATIONS  # one tuple, not a copy


def test_every_train_evaluate_and_tune_option_has_help():
    # Issue 10, item 6: argparse's own parsers, read without running anything
    from keras_resnet.training.cli import evaluate_parser, train_parser
    from keras_resnet.tuning.cli import _parser as tune_parser

    for parser in (train_parser(), evaluate_parser(), tune_parser("keras-resnet tune")):
        missing = [a.option_strings or a.dest for a in parser._actions if not a.help]
        assert not missing, (parser.prog, missing)
    augmentation = next(a for a in train_parser()._actions if "--augmentation" in a.option_strings)
    assert "crop" in augmentation.help and "crop" in augmentation.choices


def test_output_that_is_not_a_run_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a run folder"):
        training.train(output=str(tmp_path), overwrite=True, epochs=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# -------------------------------------------------------------------------- distribution


@pytest.mark.slow
def test_mirrored_two_cpus_with_sync_bn_equals_one_device(tmp_path):
    code = """
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()
    from keras_resnet import get_model, training

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=64).astype("int32")

    def run(strategy, sync):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = get_model("ResNet20", weights=None, input_shape=(32, 32, 3), classes=10,
                              width_multiplier=0.25, synchronized_bn=sync)
            training.compile_model(model, steps_per_epoch=4, epochs=1, global_batch_size=16,
                                   lr=0.4, strategy=strategy)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        model.fit(data, epochs=1, verbose=0)
        return model.get_weights()

    mirrored = training.build_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
    # On one device plain BatchNorm already sees the global batch: the reference.
    one = run(training.build_strategy("auto"), False)
    two = run(mirrored, True)
    unsynced = run(mirrored, False)
    print("SYNC", max(float(np.max(np.abs(a - b))) for a, b in zip(one, two)))
    print("UNSYNC", max(float(np.max(np.abs(a - b))) for a, b in zip(one, unsynced)))
    """
    proc = _python(code, tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    values = dict(line.split() for line in out.splitlines() if line.startswith(("SYNC", "UNSYNC")))
    # Float32 rounding only: the replicas' convolutions sum over 8 images where one device sums
    # over 16 (oneDNN, on since keras_resnet turns it on, orders those sums differently), and
    # 4 SGD steps at lr 0.025 carry it into the weights: measured 1.5e-4 (1e-6 under Eigen).
    # Per-replica statistics are a real difference, two orders of magnitude larger (1.2e-2).
    sync, unsync = float(values["SYNC"]), float(values["UNSYNC"])
    assert sync < 5e-4, values
    assert unsync > 20 * sync and unsync > 1e-3, values  # per-replica statistics do change the result


@pytest.mark.slow
def test_two_workers_train_to_identical_weights(tmp_path):
    # Two MultiWorkerMirroredStrategy workers on 127.0.0.1 (per-replica batch 16, global
    # 32, sync BN) train one epoch and end with equal weights, equal to one device
    # training at batch 32. (Noise images: on near-constant inputs such as digits'
    # background, Keras' synchronized BatchNorm, E[x^2] - E[x]^2 in float32, drifts from
    # plain BatchNorm by more than 1e-4 within a few steps.)
    data_dir = noise_folder(tmp_path / "noise")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    code = """
    import numpy as np
    from keras_resnet import training
    history, model = training.train(
        "ResNet20", data_dir="{data_dir}", model_options=dict(width_multiplier=0.25),
        batch_size={batch}, epochs=1, strategy="{strategy}", sync_bn=True, deterministic=True,
        precision="fp32", export=False, output="{output}", verbose=0)
    np.savez("{weights}", *model.get_weights())
    """
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(_python(
            code.format(data_dir=data_dir, batch=16, strategy="multi-worker", output=tmp_path / "mw",
                        weights=tmp_path / f"w{index}.npz"),
            tmp_path, TF_CONFIG=tf_config,
        ))
    single = _python(
        code.format(data_dir=data_dir, batch=32, strategy="one-device", output=tmp_path / "one",
                    weights=tmp_path / "one.npz"),
        tmp_path,
    )
    outputs = [p.communicate(timeout=300)[0] for p in (*procs, single)]
    for p, out in zip((*procs, single), outputs):
        assert p.returncode == 0, out[-3000:]

    def load(name):
        with np.load(tmp_path / name) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]

    w0, w1, one = load("w0.npz"), load("w1.npz"), load("one.npz")
    assert len(w0) == len(one)
    for a, b, c in zip(w0, w1, one):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-4)
    # only the chief wrote the run folder
    config = json.loads((tmp_path / "mw" / "config.json").read_text())
    assert config["strategy_class"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy
    assert config["replicas"] == 2 and config["global_batch_size"] == 32
    assert (tmp_path / "mw" / "model.keras").exists()


@pytest.mark.slow
def test_survivor_of_a_lost_worker_names_it_in_one_line(tmp_path):
    # Issue 10, item 2: SIGKILL one of two workers; the other exits 1 with one line naming the
    # lost worker and the command that restarts the run, instead of gRPC's traceback.
    data_dir = noise_folder(tmp_path / "noise", n=200)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = ["train", "--data-dir", str(data_dir), "--model-option", "width_multiplier=0.25", "--batch-size", "8",
            "--epochs", "3", "--strategy", "multi-worker", "--precision", "fp32", "--no-export",
            "--backup-steps", "2", "--output", str(tmp_path / "mw")]
    procs = [subprocess.Popen([sys.executable, "-m", "keras_resnet", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(TF_CONFIG=json.dumps(
                                  {"cluster": cluster, "task": {"type": "worker", "index": i}})))
             for i in range(2)]
    deadline = time.time() + 240
    while time.time() < deadline and not _backup_meta(tmp_path / "mw" / "backup" / "state.npz"):
        assert procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        time.sleep(0.1)
    procs[1].kill()
    procs[1].wait()
    _, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("keras-resnet train: error:")]
    assert len(errors) == 1, err[-3000:]
    assert errors[0].startswith(f"keras-resnet train: error: lost worker 1 (127.0.0.1:{ports[1]}): the backup "
                                "holds the run at epoch "), errors[0]
    assert errors[0].endswith(f"Restart every worker with: keras-resnet {shlex.join(args)}"), errors[0]


# ------------------------------------------------------------------------ fault tolerance


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One uninterrupted tiny run: the reference for resume, rerun and evaluate tests."""
    root = tmp_path_factory.mktemp("finished")
    result = _cli([*TINY, "--output", str(root / "run"), "--backup-steps", "3"], cwd=root)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return root / "run"


def _backup_meta(path):
    try:
        with np.load(path) as saved:
            return json.loads(str(saved["__meta__"]))
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_to_the_uninterrupted_weights(tmp_path, finished_run):
    run = tmp_path / "run"
    args = [*TINY, "--output", str(run), "--backup-steps", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_resnet", *args], cwd=tmp_path, env=_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    meta = None
    while time.time() < deadline and proc.poll() is None:
        meta = _backup_meta(run / "backup" / "state.npz")
        if meta and (meta["epoch"], meta["step"]) >= (0, 6):  # mid first epoch, or later
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert meta is not None and not (run / "metrics.json").exists(), "the run ended before the kill"
    assert not (run / "model.keras").exists()

    resumed = _cli(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout
    for ours, reference in zip(_weights(run / "model.keras"), _weights(finished_run / "model.keras")):
        np.testing.assert_array_equal(ours, reference)
    history = training.read_history(run / "history.csv")
    assert history["epoch"] == [0, 1]
    expected = training.read_history(finished_run / "history.csv")
    np.testing.assert_allclose(history["val_accuracy"], expected["val_accuracy"])


def _start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "keras_resnet", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_at(proc, pattern, position, signum):
    """Send ``signum`` once the backup under ``pattern`` holds ``position`` (epoch, step) or later."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = glob.glob(str(pattern))
        meta = _backup_meta(found[0]) if found else None
        if meta and (meta["epoch"], meta["step"]) >= position:
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=180)
    assert "Traceback" not in err, err[-3000:]
    stops = [line for line in err.splitlines() if line.startswith("Stopped by")]
    assert len(stops) == 1, err[-3000:]
    return out, stops[0]


@pytest.mark.slow
def test_sigterm_and_sigint_save_the_step_and_the_same_command_resumes(tmp_path, finished_run):
    # Issue 10, item 2: the default output (runs/ in the working folder), stdout a pipe.
    args = [*TINY, "--backup-steps", "3"]
    proc = _start(args, tmp_path)
    out, stop = _signal_at(proc, tmp_path / "runs" / "*" / "backup" / "state.npz", (0, 3), signal.SIGTERM)
    assert proc.returncode == 143, stop
    (run,) = (tmp_path / "runs").iterdir()
    meta = _backup_meta(run / "backup" / "state.npz")
    config = json.loads((run / "config.json").read_text())
    steps = config["steps_per_epoch"]  # digits: 1,295 of 1,438 train images (143 held out for val) / 32
    assert steps == (config["num_train"] // 32) and config["num_train"] + config["num_val"] == 1438
    assert 3 <= meta["step"] < steps and meta["epoch"] == 0  # saved where it stopped, not at a backup step
    assert f"Stopped by SIGTERM at epoch 1 of 2, step {meta['step']} of {steps};" in stop, stop
    # the header says what runs where, before any epoch
    assert out.index("Model      ResNet20") < out.index(f"Run folder runs/{run.name}"), out
    from keras_resnet.hardware import resolve_precision

    assert f"Precision  {resolve_precision('auto')} (" in out, out
    assert f"Data       digits: 10 classes, {config['num_train']} train / {config['num_val']} val" in out, out

    command = shlex.split(stop.split("Resume with: ", 1)[1])
    assert command[:2] == ["keras-resnet", "train"] and command[-2:] == ["--output", f"runs/{run.name}"]
    proc = _start(command[1:], tmp_path)
    out, stop = _signal_at(proc, run / "backup" / "state.npz", (1, 3), signal.SIGINT)
    assert proc.returncode == 130, stop
    assert f"Resuming runs/{run.name} from its backup at epoch 1, step {meta['step']} of {steps}." in out, out
    meta = _backup_meta(run / "backup" / "state.npz")
    assert f"Stopped by SIGINT at epoch 2 of 2, step {meta['step']} of {steps};" in stop, stop

    again = _cli(args, cwd=tmp_path)  # the first command again: it finds the unfinished run
    assert again.returncode == 0, again.stderr[-3000:]
    assert (f"Resuming runs/{run.name} at epoch 2, step {meta['step']} of {steps} (the newest unfinished "
            "run with these options; --new-run starts afresh).") in again.stdout, again.stdout
    # one line per epoch on a pipe (no progress bar), numbered over the whole run
    assert again.stdout.index("Run folder runs/") < again.stdout.index("Epoch 2/2:"), again.stdout
    assert "Epoch 3/3" not in again.stdout and "Epoch 1/" not in again.stdout and "\b" not in again.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_from"] == {"epoch": 2, "step": meta["step"]}  # as the message said
    for ours, reference in zip(_weights(run / "model.keras"), _weights(finished_run / "model.keras")):
        np.testing.assert_array_equal(ours, reference)
    assert os.listdir(tmp_path / "runs") == [run.name]


def test_default_output_continues_only_an_unfinished_run_with_the_same_options(tmp_path, monkeypatch):
    from keras_resnet.training.config import TrainConfig
    from keras_resnet.training.loop import choose_folder

    config = TrainConfig.from_kwargs(model="ResNet20", epochs=2, batch_size=32)
    runs = tmp_path / "runs"
    for name, epochs, finished in (("ResNet20-digits-1", 2, False), ("ResNet20-digits-2", 3, False),
                                   ("ResNet20-digits-0", 2, True), ("ResNet56-digits-3", 2, False)):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text(json.dumps(config.replace(epochs=epochs).to_json()))
        if finished:
            (runs / name / "metrics.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert choose_folder(config, overwrite=False, new_run=False, started="9") == (
        os.path.join("runs", "ResNet20-digits-1"), "restart", True)
    assert choose_folder(config, overwrite=False, new_run=True, started="9") == (
        os.path.join("runs", "ResNet20-digits-9"), "new", False)
    assert choose_folder(config.replace(lr=0.3), overwrite=False, new_run=False, started="9")[2] is False


def test_progress_counts_epochs_and_steps_over_the_whole_run(capsys):
    from keras_resnet.training import callbacks

    class Pipe(io.StringIO):
        def isatty(self):
            return False

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(callbacks.progress("auto", epochs=3, steps_per_epoch=4, stream=Pipe()), callbacks.EpochLine)
    bar = callbacks.progress("auto", epochs=3, steps_per_epoch=4, stream=Terminal())
    assert isinstance(bar, callbacks.ProgressBar)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    x, y = np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32")
    # the rest of an interrupted second epoch (steps 3 and 4 of 4), as a resumed run fits it
    bar.step_offset = 2
    model.fit(x, y, batch_size=4, initial_epoch=1, epochs=2, callbacks=[bar], verbose=0)
    out = capsys.readouterr().out
    assert "Epoch 2/3" in out and "Epoch 2/2" not in out
    assert "4/4" in out and "2/2" not in out.replace("Epoch 2/3", "")


def test_evaluate_val_split_of_a_dataset_without_one_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(dict(dataset="digits", preprocessing="tf", image_size=32)))
    (tmp_path / "model.keras").write_bytes(b"")  # never read: the split is checked first
    with pytest.raises(ValueError, match="digits has no validation split. Received: split='val'"):
        training.evaluate(str(tmp_path), split="val")


def test_small_training_set_lowers_the_batch_and_exports_to_saved_models(tmp_path, monkeypatch, capsys):
    # 40 images, 20% held out for test, then 10% of each class of the rest for validation:
    # 28 training images against the CIFAR recipe's batch of 128 (issue 23: not one step an epoch)
    data_dir = noise_folder(tmp_path / "noise", n=40)
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "elsewhere" / "r1"
    training.train("ResNet20", data_dir=str(data_dir), model_options=dict(width_multiplier=0.25), epochs=1,
                   precision="fp32", output=str(output), verbose=0)
    out = capsys.readouterr().out
    assert "global batch 8, 3 steps/epoch (batch lowered from the recipe's for 28 training images" in out, out
    config = json.loads((output / "config.json").read_text())
    assert config["batch_size"] == 8 and config["steps_per_epoch"] == 3
    metrics = json.loads((output / "metrics.json").read_text())
    # the one export location: saved_models/<run name>/<version>, as `keras-resnet export`
    assert metrics["export_path"] == str(tmp_path / "saved_models" / "r1" / "1")
    assert (tmp_path / "saved_models" / "r1" / "1" / "saved_model.pb").exists()
    assert not (output / "saved_model").exists()


@pytest.mark.slow
def test_finished_run_is_not_trained_again_unless_overwrite(finished_run, tmp_path):
    stamp = (finished_run / "model.keras").stat().st_mtime_ns
    again = _cli([*TINY, "--output", str(finished_run)], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "not training again" in again.stdout
    assert (finished_run / "model.keras").stat().st_mtime_ns == stamp

    copy = tmp_path / "copy"
    os.makedirs(copy)
    for name in ("config.json", "metrics.json"):
        (copy / name).write_bytes((finished_run / name).read_bytes())
    fresh = _cli([*TINY, "--epochs", "1", "--output", str(copy), "--overwrite"], cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert json.loads((copy / "metrics.json").read_text())["epochs"] == 1
    assert training.read_history(copy / "history.csv")["epoch"] == [0]


@pytest.mark.slow
def test_run_folder_and_evaluate_round_trip(finished_run, tmp_path):
    config = json.loads((finished_run / "config.json").read_text())
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert config["class_names"] == [str(i) for i in range(10)] and config["num_classes"] == 10
    assert config["preprocessing"] == "tf" and config["image_size"] == 32 and config["model"] == "ResNet20"
    assert config["versions"]["keras"] == keras.__version__
    assert {"test_accuracy", "test_top5", "epochs", "train_time_s", "images_per_sec"} <= set(metrics)
    for name in ("history.csv", "history.png", "model.keras", "best.keras", "backup/state.npz"):
        assert (finished_run / name).exists(), name
    assert os.listdir(finished_run / "logs")
    result = _cli(["evaluate", str(finished_run)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"top-1 {metrics['test_accuracy']:.4f}" in result.stdout
    assert f"top-5 {metrics['test_top5']:.4f}" in result.stdout
    # the validation split the run held out of train, again: the last epoch's val accuracy
    val = _cli(["evaluate", str(finished_run), "--split", "val", "--batch-size", "32"], cwd=tmp_path)  # as fit
    assert val.returncode == 0, val.stderr[-2000:]
    last = training.read_history(finished_run / "history.csv")["val_accuracy"][-1]
    assert f"val ({config['num_val']} images): top-1 {last:.4f}" in val.stdout, val.stdout


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(training.TrainingDiverged, match="loss became"):
        training.train(
            "ResNet20", model_options=dict(width_multiplier=0.25), image_size=32, batch_size=64,
            epochs=1, lr=1e12, warmup_epochs=0, output=str(tmp_path / "nan"), export=False, verbose=0,
        )
    assert not (tmp_path / "nan" / "metrics.json").exists()
    assert not (tmp_path / "nan" / "model.keras").exists()


# --------------------------------------------------------------------------- default job


@pytest.mark.slow
def test_default_job_reaches_95_percent_on_digits(tmp_path):
    # The promise: `keras-resnet train` with no options (ResNet-20 on digits), as a
    # user runs it: without KERAS_RESNET_PRECISION (what auto picks on this machine).
    result = _cli(["train", "--output", str(tmp_path / "default"), "--verbose", "2"], cwd=tmp_path, timeout=900,
                  KERAS_RESNET_PRECISION="")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95, metrics


@pytest.mark.slow
def test_evaluate_uses_the_runs_augmentation_and_gives_its_test_metrics(tmp_path):
    """A run trained with a non-default augmentation ("imagenet": evaluated on the center crop
    of the image resized to size / 0.875), evaluated again, gives exactly the test top-1 and
    loss its metrics.json recorded (the same images through the same crop); evaluated on the
    whole image instead, as evaluate did before, the loss differs."""
    output = tmp_path / "aug"
    training.train("ResNet20", model_options=dict(width_multiplier=0.25), epochs=1, image_size=32,
                   batch_size=64, augmentation="imagenet", precision="fp32", output=str(output),
                   export=False, verbose=0)
    metrics = json.loads((output / "metrics.json").read_text())
    assert json.loads((output / "config.json").read_text())["augmentation"] == "imagenet"
    again = training.evaluate(str(output), batch_size=64)
    assert again["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-7)
    assert again["loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)
    from keras_resnet.data import load_data

    whole = load_data("digits").eval_dataset("test", 64, image_size=32, preprocessing="tf",
                                              augmentation="none")
    net = keras.saving.load_model(str(output / "model.keras"), compile=False)
    net.compile(loss=keras.losses.SparseCategoricalCrossentropy())
    assert abs(float(net.evaluate(whole, verbose=0)) - metrics["test_loss"]) > 1e-3


def test_history_png_names_the_run_draws_the_learning_rate_and_survives_a_spike(tmp_path):
    """The issue's run: one validation-loss spike (15.7 at epoch 2) among values near 1.
    On the log loss axis the train curve still spans a visible share of the panel (on a
    linear one about 6%); the title names model and data; the learning-rate panel shows
    He et al. 2015's step schedule: /10 at 50% and 75% of the steps."""
    from keras_resnet.training.fit import _lr_curve_of
    from keras_resnet.training.recipe import ResNetLearningRate
    from keras_resnet.training.run_folder import plot_history

    epochs, rates = _lr_curve_of(ResNetLearningRate(0.1, 400, schedule="step"), 4, 100, points=400)
    assert len(epochs) == 400 and epochs[200] == 2.0
    np.testing.assert_allclose([rates[0], rates[199], rates[200], rates[299], rates[300], rates[399]],
                               [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
    history = {"epoch": [0, 1, 2, 3], "loss": [2.0, 1.5, 1.2, 1.0], "val_loss": [2.1, 15.7, 1.3, 1.1],
               "accuracy": [0.3, 0.5, 0.6, 0.7], "val_accuracy": [0.3, 0.2, 0.6, 0.65]}
    figure = plot_history(history, tmp_path / "history.png", title="ResNet20 on digits (r1)",
                          learning_rate=(epochs, rates))
    assert (tmp_path / "history.png").stat().st_size > 0
    assert figure._suptitle.get_text() == "ResNet20 on digits (r1)"
    loss, _, lr = figure.axes
    assert lr.get_title() == "learning rate" and loss.get_yscale() == "log"
    to_axes = loss.transAxes.inverted()
    low, high = (to_axes.transform(loss.transData.transform((1, y)))[1] for y in (1.0, 2.0))
    assert high - low > 0.15  # the train loss from 2.0 to 1.0, as a share of the panel's height


def test_resumed_history_keeps_the_columns_of_its_file(tmp_path):
    """A history.csv written before ``lr`` was logged, appended by a resumed run that logs
    it: Keras' own CSVLogger shifts the new row under the old header (its ``val_accuracy``
    column reads the rate); HistoryCSV keeps the file's columns, so every value reads back under
    its own name."""
    from keras_resnet.training.callbacks import HistoryCSV

    old = "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.25,0.25,2.5\n"
    logs = {"accuracy": 0.75, "loss": 0.5, "lr": 0.125, "val_accuracy": 0.625, "val_loss": 1.5}
    for name, logger in (("keras.csv", lambda p: keras.callbacks.CSVLogger(p, append=True)),
                         ("ours.csv", HistoryCSV)):
        path = tmp_path / name
        path.write_text(old)
        callback = logger(str(path))
        callback.on_train_begin()
        callback.on_epoch_end(1, dict(logs))
        callback.on_train_end()
    with open(tmp_path / "keras.csv", newline="") as f:
        assert list(csv.DictReader(f))[1]["val_accuracy"] == "0.125"  # the rate, misread
    assert training.read_history(tmp_path / "ours.csv") == {
        "epoch": [0, 1], "accuracy": [0.5, 0.75], "loss": [1.25, 0.5], "val_accuracy": [0.25, 0.625],
        "val_loss": [2.5, 1.5]}
    fresh = tmp_path / "fresh.csv"  # a new file: Keras' columns, lr included
    callback = HistoryCSV(str(fresh))
    callback.on_train_begin()
    callback.on_epoch_end(0, dict(logs))
    callback.on_train_end()
    assert fresh.read_text().splitlines()[0] == "epoch,accuracy,loss,lr,val_accuracy,val_loss"
