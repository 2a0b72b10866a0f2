"""keras-tuner search over keras_resnet models and the training recipe.

Outside references: keras-tuner's own trial files on disk (``trial.json`` status and
score, ``checkpoint.weights.h5``), keras.applications' parameter counts, and the
error messages of the model builders that a failing trial must surface.
"""

import glob
import json
import os

import numpy as np
import pytest

import keras
import keras_tuner

from keras_resnet import cli, tuning
from keras_resnet.tuning import cli as tuning_cli
from keras_resnet.data import ImageData

# A tiny search: ResNet-8 (n=1) at half width, two 16-image steps an epoch.
TINY = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--space", "variant=v1",
        "--space", "depth=8", "--space", "width_multiplier=0.5", "--space", "lr=0.1:0.2",
        "--space", "schedule=cosine", "--space", "augmentation=none,crop", "--verbose", "0"]


def _trials_on_disk(output):
    trials = {}
    for path in glob.glob(os.path.join(output, tuning.TUNER_PROJECT, "trial_*", "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        trials[trial["trial_id"]] = trial
    return trials


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    output = str(tmp_path_factory.mktemp("tune") / "search")
    rc = tuning_cli.cli_main("tune", ["--max-trials", "2", "--output", output, *TINY])
    return output, rc


@pytest.mark.slow
def test_two_trial_search_completes_and_respects_the_narrowed_space(searched):
    output, rc = searched
    assert rc == 0
    trials = _trials_on_disk(output)
    assert len(trials) == 2
    assert {t["status"] for t in trials.values()} == {"COMPLETED"}
    for trial in trials.values():
        values = trial["hyperparameters"]["values"]
        assert (values["variant"], values["depth"], values["width_multiplier"]) == ("v1", 8, 0.5)
        assert 0.1 <= values["lr"] <= 0.2
        assert values["schedule"] == "cosine"
        assert values["augmentation"] in ("none", "crop")
        # the other keys keep the default space
        assert values["stochastic_depth_rate"] in tuning.SEARCH_SPACE["stochastic_depth_rate"].values
    with open(os.path.join(output, "best.json")) as f:
        best = json.load(f)
    scores = {tid: t["score"] for tid, t in trials.items()}
    assert best["trial_id"] == max(scores, key=scores.get)
    assert best["score"] == pytest.approx(max(scores.values()))
    assert best["trials"] == {"total": 2, "completed": 2, "failed": 0}


@pytest.mark.slow
def test_best_hyperparameters_rebuild_the_model_keras_tuner_scored(searched):
    """best.json -> HyperResNet.build_model, loaded with keras-tuner's checkpoint of the
    best trial, reproduces the validation accuracy keras-tuner recorded for it."""
    output, _ = searched
    with open(os.path.join(output, "best.json")) as f:
        best = json.load(f)
    hypermodel = tuning.HyperResNet("digits", batch_size=16, strategy="one-device")
    values = best["hyperparameters"]
    model = hypermodel.build_model(values)
    assert model.output_shape == (None, 10)
    model.load_weights(os.path.join(output, tuning.TUNER_PROJECT, f"trial_{best['trial_id']}",
                                    "checkpoint.weights.h5"))
    # trials are scored on the validation split held out of train (never on test)
    val = hypermodel.data.eval_dataset("val", 64, image_size=32, preprocessing=best["model"]["preprocessing"],
                                       augmentation=values["augmentation"])
    probabilities, labels = model.predict(val, verbose=0), np.concatenate([y for _, y in val])
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    assert accuracy == pytest.approx(best["score"], abs=1e-6)


@pytest.mark.slow
def test_rerun_resumes_the_search(searched, capsys):
    output, _ = searched
    files = os.path.join(output, tuning.TUNER_PROJECT, "trial_*", "trial.json")
    before = {p: os.path.getmtime(p) for p in glob.glob(files)}
    assert tuning_cli.cli_main("tune", ["--max-trials", "2", "--output", output, *TINY]) == 0
    assert "Reloading Tuner" in capsys.readouterr().out
    after = {p: os.path.getmtime(p) for p in glob.glob(files)}
    assert after == before  # max_trials reached: no trial ran again, none was added
    # a larger budget continues the same search with exactly one more trial
    assert tuning_cli.cli_main("tune", ["--max-trials", "3", "--output", output, *TINY]) == 0
    trials = _trials_on_disk(output)
    assert len(trials) == 3 and {t["status"] for t in trials.values()} == {"COMPLETED"}
    # other options in the same folder are refused before anything runs
    other_space = [*TINY[:-6], "--verbose", "0"]  # without the schedule and augmentation choices
    assert cli.main(["tune", "--max-trials", "3", "--output", output, *other_space]) == 2
    assert "other options" in capsys.readouterr().err


@pytest.mark.slow
def test_always_failing_trials_exit_non_zero_with_the_first_error(tmp_path, monkeypatch, capsys):
    # inject an invalid value past the space checks: every model build fails in the builder
    monkeypatch.setattr("keras_resnet.tuning.hypermodel.SE_RATIO", 5.0)
    output = str(tmp_path / "failing")
    rc = cli.main(["tune", "--max-trials", "2", "--output", output, "--space", "se=true", *TINY])
    assert rc == 1
    err = capsys.readouterr().err
    assert "No trial completed (2 failed of 2)" in err
    assert "se_ratio must be None or in (0, 1]. Received: se_ratio=5.0" in err
    trials = _trials_on_disk(output)
    assert len(trials) == 2 and {t["status"] for t in trials.values()} == {"FAILED"}
    assert not os.path.exists(os.path.join(output, "best.json"))


def test_space_narrowing_rejects_bad_keys_and_values():
    cases = [
        ({"depht": 20}, "Unknown search key(s) ['depht']"),
        ({"depth": 32}, "Received: depth=32"),  # 6n+2 but not 9n+2, and v2 is searched
        ({"variant": "v1.5"}, "Received: variant='v1.5'"),  # not a CIFAR variant
        ({"lr": (0.5, 0.1)}, "low <= high"),
        ({"lr": (-1.0, 0.1)}, "Received: lr=-1.0"),
        ({"schedule": ["step", "linear"]}, "Received: schedule='linear'"),
        ({"augmentation": "strong"}, "Received: augmentation='strong'"),
        ({"se": "yes"}, "Received: se='yes'"),
    ]
    for space, message in cases:
        with pytest.raises(ValueError) as info:
            tuning.narrow_space(space, "cifar")
        assert message in str(info.value), (space, str(info.value))
    # with v1 only, 6n+2 depths are fine; ImageNet inputs take the spec table's depths
    assert tuning.narrow_space({"variant": "v1", "depth": [32, 110]}, "cifar")["depth"].values == (32, 110)
    assert tuning.narrow_space({"depth": 101}, "imagenet")["depth"].values == (101,)
    with pytest.raises(ValueError, match="Received: depth=20"):
        tuning.narrow_space({"depth": 20}, "imagenet")
    with pytest.raises(ValueError, match=r"Unknown search key\(s\) \['widht'\]"):
        tuning.HyperResNet("no-such-dataset", space={"widht": 2.0})  # before any data is loaded


def test_parse_space_from_the_command_line():
    parsed = tuning.parse_space(["variant=v1", "depth=20,32", "lr=0.05:0.4", "se=false", "width_multiplier=2"])
    assert parsed == {"variant": "v1", "depth": [20, 32], "lr": (0.05, 0.4), "se": False,
                      "width_multiplier": 2}
    with pytest.raises(ValueError, match="Received: --space 'depth'"):
        tuning.parse_space(["depth"])


def _fake_imagenet_data():
    return ImageData(name="imagenet-like", class_names=[str(i) for i in range(1000)], num_train=10_000,
                     num_val=1, num_test=1, image_size=224, default_augmentation="imagenet")


@pytest.mark.parametrize("variant, expected", [("v1", 25_636_712), ("v2", 25_613_800)])
def test_imagenet_family_samples_the_keras_applications_models(variant, expected):
    """Fixed to depth 50, width 1, no SE: exactly keras.applications.ResNet50 / ResNet50V2
    (parameter counts from the keras.applications documentation)."""
    hypermodel = tuning.HyperResNet(_fake_imagenet_data(), strategy="one-device", space={
        "variant": variant, "depth": 50, "width_multiplier": 1.0, "se": False, "stochastic_depth_rate": 0.0})
    hp = keras_tuner.HyperParameters()
    with keras.StatelessScope():
        model = hypermodel.build(hp)
    assert model.count_params() == expected
    assert hp.values["variant"] == variant and hp.values["depth"] == 50
    assert hypermodel.preprocessing(hp.values) == {"v1": "caffe", "v2": "tf"}[variant]


@pytest.mark.slow
def test_sigint_stops_the_running_trial_and_a_rerun_runs_it_again(tmp_path, monkeypatch, capsys):
    # Issue 10, item 2 for `tune`: a signal mid-trial saves what keras-tuner has, prints one
    # line with the command that resumes, exits 130; the rerun runs the interrupted trial.
    import signal

    from keras_resnet.tuning import hypermodel

    fired = []

    class SignalAtSecondStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0 and not fired:
                fired.append(True)
                os.kill(os.getpid(), signal.SIGINT)  # caught by the search: stops at the next step

    original = hypermodel.fit_with_training

    def fit_with_signal(hm, model, values, *, callbacks=(), **kwargs):
        return original(hm, model, values, callbacks=[SignalAtSecondStep(), *callbacks], **kwargs)

    monkeypatch.setattr(hypermodel, "fit_with_training", fit_with_signal)
    monkeypatch.chdir(tmp_path)
    argv = ["tune", "--max-trials", "1", *TINY]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Stopped by SIGINT during trial 1 (0 completed"), err
    (folder,) = os.listdir(tmp_path / "runs")
    assert err[0].endswith(f"Resume with: keras-resnet {' '.join(argv)} --output runs/{folder}"), err
    assert {t["status"] for t in _trials_on_disk(tmp_path / "runs" / folder).values()} == {"RUNNING"}

    assert cli.main(argv) == 0  # the same command: continues that search, runs trial 1 again
    out = capsys.readouterr().out
    assert f"Continuing the search in runs/{folder}" in out
    trials = _trials_on_disk(tmp_path / "runs" / folder)
    assert list(trials) == ["0"] and trials["0"]["status"] == "COMPLETED"
    best = json.loads((tmp_path / "runs" / folder / "best.json").read_text())
    assert best["trial_id"] == "0" and best["trial"] == 1  # keras-tuner's "Trial 1" is trial_0
    assert "\nBest: trial 1," in out
