"""keras-resnet benchmark: output format and argument checking (no timing assertions)."""

import importlib.util
import json
import math

import keras
import pytest

from keras_resnet import benchmark, get_model
from keras_resnet.benchmark import cli as benchmark_cli
from keras_resnet.hardware import resolve_precision
from keras_resnet.utils import with_dtype_policy

REQUIRED = {"impl", "model", "mode", "precision", "images_per_sec", "gflops_per_sec", "peak_fraction"}


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_forward_flops_match_he_et_al_table_1():
    # He et al. 2015, Table 1: ResNet-18 1.8e9, ResNet-50 3.8e9 multiply-adds at 224x224.
    resnet18 = get_model("ResNet18", weights=None)
    assert benchmark.forward_flops(resnet18) / 2 == pytest.approx(1.8e9, rel=0.03)
    resnet50 = keras.applications.ResNet50(weights=None)
    assert benchmark.forward_flops(resnet50) / 2 == pytest.approx(3.8e9, rel=0.03)


def test_tiny_train_run_prints_json_lines_and_table(capsys, monkeypatch):
    # torch is an optional extra: when it is missing the comparison is skipped, not failed.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("torch") else real_find_spec(name, *a))
    code = benchmark_cli.cli_main("benchmark", ["--model", "ResNet18", "--mode", "train", "--image-size", "32",
                                            "--batch-size", "4", "--steps", "2", "--rounds", "1",
                                            "--compare", "torchvision"])
    assert code == 0
    out, err = capsys.readouterr()
    assert "torch not importable" in err
    (row,) = json_lines(out)
    assert REQUIRED <= set(row)
    assert (row["impl"], row["model"], row["mode"]) == ("keras_resnet", "ResNet18", "train")
    assert row["precision"] == resolve_precision("auto")
    assert row["images_per_sec"] > 0 and len(row["images_per_sec_rounds"]) == 1
    # a training step is three forward passes of ResNet-18 at 32x32 (1.8e9 MACs at 224x224)
    flops_per_image = row["gflops_per_sec"] / row["images_per_sec"] * 1e9
    assert flops_per_image == pytest.approx(3 * 2 * 1.8e9 * (32 / 224) ** 2, rel=0.1)
    assert "keras_resnet" in out.split("\n\n")[-1] and "img/s" in out
    # how quiet the machine was, in every row; a one-line warning on stderr when it was not
    machine = row["machine"]
    assert machine["others_cpu_seconds"] >= 0 and machine["own_cpu_seconds"] > 0
    assert ("not quiet" in err) == (machine["quiet"] is False)


@pytest.mark.slow
def test_infer_run_compares_with_keras_applications(capsys):
    code = benchmark_cli.cli_main("benchmark", ["--model", "ResNet50", "--mode", "infer", "--image-size", "32",
                                            "--batch-size", "2", "--steps", "1", "--rounds", "2",
                                            "--precision", "fp32", "--json-only"])
    assert code == 0
    rows = json_lines(capsys.readouterr().out)
    assert [r["impl"] for r in rows] == ["keras_resnet", "keras.applications"]
    for row in rows:
        assert REQUIRED <= set(row) and row["mode"] == "infer" and row["precision"] == "fp32"
        assert row["images_per_sec"] > 0 and 0 < row["peak_fraction"] < 10
    # same architecture, same FLOPs per image
    ours, reference = (r["gflops_per_sec"] / r["images_per_sec"] for r in rows)
    assert ours == pytest.approx(reference, rel=0.01)


GOOD = ["--model", "ResNet18", "--mode", "train", "--image-size", "32", "--batch-size", "4"]


def with_arg(flag, value):
    argv = list(GOOD)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.mark.parametrize(
    "argv,needle",
    [
        (with_arg("--batch-size", "0"), "batch_size=0"),
        (with_arg("--batch-size", "four"), "--batch-size"),
        (with_arg("--image-size", "16"), "image_size=16"),
        (with_arg("--steps", "0"), "steps=0"),
        (with_arg("--rounds", "-1"), "rounds=-1"),
        (with_arg("--mode", "fit"), "mode='fit'"),
        (with_arg("--model", "ResNet51"), "ResNet51"),
        (with_arg("--precision", "fp8"), "precision='fp8'"),
        (with_arg("--compare", "timm"), "compare='timm'"),
        (with_arg("--compare", "keras.applications,timm"), "compare='keras.applications,timm'"),
        (with_arg("--reference-precision", "fp16"), "reference_precision='fp16'"),
        (GOOD[2:], "--model"),
        (GOOD + ["--bogus"], "--bogus"),
    ],
    ids=["batch0", "batch_text", "image16", "steps0", "rounds_negative", "mode", "model", "precision",
         "compare", "compare_list", "reference_precision", "missing_model", "unknown_flag"],
)
def test_bad_arguments_raise_value_error_naming_them(argv, needle, monkeypatch):
    # raised before any model is built
    monkeypatch.setattr(benchmark.runner, "build_ours", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(ValueError) as info:
        benchmark_cli.cli_main("benchmark", argv)
    assert needle in str(info.value)


def test_format_table_lists_every_implementation():
    rows = [
        {"impl": "keras_resnet", "mode": "train", "precision": "fp32", "images_per_sec": 10.0,
         "gflops_per_sec": 240.0, "peak_fraction": 0.5},
        {"impl": "keras.applications", "mode": "train", "precision": "fp32", "images_per_sec": 5.0,
         "gflops_per_sec": 120.0, "peak_fraction": 0.25, "keras_resnet_speedup": 2.0},
    ]
    table = benchmark.format_table(rows).splitlines()
    assert len(table) == 3 and "50.0%" in table[1] and "ours 2.00x" in table[2]
    assert math.isclose(float(table[2].split()[3]), 5.0)


def test_data_mode_times_both_augmentation_presets(capsys):
    code = benchmark_cli.cli_main("benchmark", ["--model", "ResNet20", "--mode", "data", "--image-size", "32",
                                            "--batch-size", "8", "--steps", "2", "--rounds", "1", "--json-only"])
    assert code == 0
    rows = json_lines(capsys.readouterr().out)
    assert [r["augmentation"] for r in rows] == list(benchmark.DATA_PRESETS)
    for row in rows:
        assert REQUIRED <= set(row) and row["impl"] == "keras_resnet.data" and row["dataset"] == "digits"
        assert row["images_per_sec"] > 0 and row["preprocessing"] == "tf"  # ResNet20's preprocessing (model_info)


def test_compare_accepts_a_comma_separated_list():
    assert benchmark.compares_of("keras.applications, torchvision") == ("keras.applications", "torchvision")
    assert benchmark.compares_of("none") == ()
    benchmark.check_args(model="ResNet50", mode="train", batch_size=2, image_size=32, steps=1, rounds=1,
                         precision="fp32", compare="keras.applications,torchvision", reference_precision="same")


@pytest.mark.slow
def test_reference_precision_same_builds_keras_applications_under_our_policy(capsys):
    # keras.applications' model under the same mixed policy as ours: same FLOPs, its compute
    # dtype follows the policy (we do not time anything here).
    reference = with_dtype_policy("float32", lambda: benchmark.build_keras_applications(
        "ResNet50", mode="infer", batch_size=2, image_size=32, precision="mixed_bfloat16"))
    conv = next(l for l in reference.layers if isinstance(l, keras.layers.Conv2D))
    assert conv.compute_dtype == "bfloat16" and conv.dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored


def _onednn_in_subprocess(env_value):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    code = ("import keras_resnet; from tensorflow.python.util import _pywrap_util_port as p; "
            "from keras_resnet.hardware import onednn_enabled; "
            "print(p.IsMklEnabled(), onednn_enabled())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()[-2:]


def test_importing_keras_resnet_turns_tensorflow_onednn_on_unless_the_user_set_it():
    # TensorFlow's own answer (IsMklEnabled), on this x86-64 Linux machine whose CPU is not one
    # TensorFlow enables oneDNN for by default; a user's TF_ENABLE_ONEDNN_OPTS=0 still wins.
    assert _onednn_in_subprocess(None) == ["True", "True"]
    assert _onednn_in_subprocess("0") == ["False", "False"]


def test_torch_python_of_another_virtual_environment_is_not_taken_for_this_one(tmp_path):
    # Every venv's python links to the same base interpreter (resolving the links made
    # `--torch-python` of a torch venv look like this interpreter, so torch was "missing").
    import subprocess
    import sys

    from keras_resnet.benchmark import runner

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    other = str(tmp_path / "venv" / "bin" / "python")
    command = runner.torch_worker_command(other, {"steps": 1})
    assert command[:2] == [other, runner.__file__.replace("runner.py", "torch_worker.py")]
    assert runner.torch_worker_command(sys.executable, {})[1:3] == ["-m", "keras_resnet.benchmark.torch_worker"]
    # the probe runs in that venv, which has no torch, whatever this interpreter has
    assert runner.torch_available(other) is False
