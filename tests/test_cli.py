"""The command line: start-up without TensorFlow, stderr free of native logs, and the
one error policy of ``cli.main`` (issue 10, items 4 and 5)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from keras_resnet import cli, specs

ROOT = pathlib.Path(__file__).resolve().parents[1]
NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d", re.MULTILINE)  # absl's format

# Runs cli.main in a fresh interpreter and reports which heavy packages it imported.
PROBE = """
import sys
from keras_resnet import cli
code = cli.main(sys.argv[1:])  # --help included: nothing escapes cli.main
print("PROBE", code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def run(args, *, env=None, probe=False):
    """``keras-resnet ARGS`` in a fresh process, without the test session's log settings."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "ABSL_MIN_LOG_LEVEL")}
    command = ["-c", PROBE, *args] if probe else ["-m", "keras_resnet", *args]
    return subprocess.run([sys.executable, *command], cwd=ROOT, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=600)


def probed(args):
    out = run(args, probe=True)
    code, tf, keras = out.stdout.split("PROBE")[-1].split()
    return int(code), tf == "True", keras == "True", out


# ------------------------------------------------------------- start-up without TensorFlow


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--family", "cifar"], ["list", "--weights"]])
def test_help_and_list_do_not_import_tensorflow(args):
    code, tf, keras, out = probed(args)
    assert code == 0 and not tf and not keras, out.stderr
    assert out.stderr == ""


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_help_builds_without_tensorflow(command):
    """Every command named in cli.COMMANDS answers --help without importing TensorFlow:
    cli.COMMANDS must point at modules that build their parser from argparse alone."""
    code, tf, _, out = probed([command, "--help"])
    assert code == 0, out.stderr
    assert f"keras-resnet {command}" in out.stdout  # its own usage line
    assert not tf, f"`keras-resnet {command} --help` imported TensorFlow"


def test_list_prints_the_registry_in_order(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["name", "family", "variant", "depth", "input", "preprocessing"]
    assert [line.split()[0] for line in lines[1:]] == list(specs.MODELS)
    row = dict(zip(specs.MODELS, lines[1:]))["ResNet50V1_5"]
    assert row.split()[1:6] == ["imagenet", "v1.5", "50", "224", "torch"]
    assert row.endswith(specs.MODELS["ResNet50V1_5"].description)
    assert cli.main(["list", "--family", "cifar"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == [n for n, s in specs.MODELS.items() if s.family == "cifar"]


# ------------------------------------------------------------------ native log lines


def test_summary_writes_nothing_to_stderr():
    """No TensorFlow/XLA C++ log line reaches stderr in normal use."""
    out = run(["summary", "ResNet20"])
    assert out.returncode == 0, out.stderr
    assert "Total params: 271,098" in out.stdout  # He et al.'s ResNet-20, BN statistics included
    assert out.stderr == ""


@pytest.mark.parametrize("how", ["TF_CPP_MIN_LOG_LEVEL=0", "--debug"])
def test_native_logs_come_back_when_asked(how):
    """A user's own TF_CPP_MIN_LOG_LEVEL, or --debug, shows TensorFlow's log again."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"} if how.startswith("TF_") else {}
    args = ["summary", "ResNet20"] + (["--debug"] if how == "--debug" else [])
    out = run(args, env=env)
    assert out.returncode == 0, out.stderr
    assert NATIVE_LOG_LINE.search(out.stderr), out.stderr


def test_native_log_filter_keeps_other_lines():
    kept = [line for line in (
        "I0000 00:00:1796122931.379999 24723 cudart_stub.cc:31] Could not find cuda drivers\n",
        "W1201 10:41:51.000001 24723 some.cc:1] a warning\n",
        "E0000 00:00:1796123167.436513 26952 cuda_platform.cc:52] failed call to cuInit\n",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "/path/module.py:3: UserWarning: a Python warning\n",
    ) if not cli._below(line, 3)]
    assert kept == ["/path/module.py:3: UserWarning: a Python warning\n"]
    assert cli._below("I0000 00:00:1796122931.379999 1 x.cc:1] info\n", 1)
    assert not cli._below("W0000 00:00:1796122931.379999 1 x.cc:1] warning\n", 1)


# ------------------------------------------------------------------ the error policy


def cli_main(command, argv):
    """A stand-in subcommand that fails the way argv[0] asks."""
    kind = argv[0]
    if kind == "usage":
        raise ValueError("--epochs must be a positive integer.\n Received: --epochs 0")
    if kind == "environment":
        raise OSError("No space left on device: runs/r1")
    if kind == "lost-worker":
        raise cli.CommandError("worker 1 was lost; rerun the same command to resume", exit_code=1)
    if kind == "stopped":
        raise cli.Stopped("stopped at epoch 2 step 5; resume with: keras-resnet train", 143)
    if kind == "warn":
        import warnings

        for _ in range(2):
            warnings.warn("No class_names given:\n the export labels its classes class_0 ...")
        warnings.warn_explicit("`build()` was called on layer x", UserWarning, "layer.py", 1,
                               module="keras.src.layers.layer")  # as Keras attributes its own
    print("done")
    return 0


@pytest.fixture
def fake_command(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "fake", (__name__, "a command that fails on request"))
    for key in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "ABSL_MIN_LOG_LEVEL"):
        if key in os.environ:  # cli.main sets defaults; put the session's values back
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("kind,code,line", [
    ("usage", 2, "keras-resnet fake: error: --epochs must be a positive integer. Received: --epochs 0"),
    ("environment", 1, "keras-resnet fake: error: No space left on device: runs/r1"),
    ("lost-worker", 1, "keras-resnet fake: error: worker 1 was lost; rerun the same command to resume"),
    ("stopped", 143, "stopped at epoch 2 step 5; resume with: keras-resnet train"),
])
def test_one_line_and_exit_status_per_kind_of_error(fake_command, capsys, kind, code, line):
    assert cli.main(["fake", kind]) == code
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


@pytest.mark.parametrize("kind,error", [("usage", ValueError), ("environment", OSError)])
def test_debug_shows_the_traceback(fake_command, kind, error):
    with pytest.raises(error):
        cli.main(["fake", kind, "--debug"])


def test_warnings_are_one_line_once_and_the_libraries_stay_quiet(fake_command, capsys):
    assert cli.main(["fake", "warn"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "keras-resnet fake: warning: No class_names given: the export labels its classes class_0 ...\n"
    assert captured.out == "done\n"


def test_success_and_unknown_command(fake_command, capsys):
    assert cli.main(["fake", "ok"]) == 0 and capsys.readouterr().out == "done\n"
    assert cli.main(["no-such-command"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("args,fragment", [
    (["summary", "ResNet51"], "`keras-resnet list`"),
    (["summary", "ResNet20", "--input-size", "4"], "--input-size 4"),
])
def test_list_and_summary_user_errors(fake_command, capsys, args, fragment):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"keras-resnet {args[0]}: error: ") and err.count("\n") == 1
    assert fragment in err


@pytest.mark.parametrize("args,flag", [
    (["list", "--family", "tiny"], "--family"),
    (["summary", "ResNet20", "--classes", "0"], "--classes"),
    (["train", "--epochs", "two"], "--epochs"),
    (["export", "--format", "onnxx"], "--format"),
    (["benchmark", "--mode", "train"], "--model"),
    (["convert"], "SRC"),
])
def test_bad_flags_are_one_line_usage_errors_in_every_command(fake_command, capsys, args, flag):
    """argparse's errors, handled one way (cli.ArgumentParser): one line naming the flag."""
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"keras-resnet {args[0]}: error: ") and err.count("\n") == 1, err
    assert flag in err


# --------------------------------------------------------- the environment: exit 1, one line

# A fresh interpreter where TensorFlow cannot be imported (as under a Keras-on-PyTorch or
# Keras-on-JAX install) but Keras can, on JAX.
WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # `import tensorflow` raises ModuleNotFoundError
from keras_resnet import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_command_needing_a_missing_package_says_so_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "train", "--epochs", "1",
                          "--output", str(tmp_path / "r")], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("keras-resnet train: error: train needs tensorflow, ")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args", [["train", "--dataset", "cifar10"],
                                  ["evaluate", "ResNet50", "--dataset", "cifar10"]])
def test_an_unprepared_tfds_dataset_offline_is_one_line_and_fast(fake_command, monkeypatch, capsys,
                                                                  tmp_path, args):
    """Offline, a tfds dataset that is not prepared fails in one line, exit 1, within seconds
    (the network probe), instead of tfds retrying for minutes."""
    import tensorflow_datasets as tfds

    from keras_resnet.data import tfds_source

    monkeypatch.setattr(tfds_source, "_network_available", lambda: False)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.chdir(tmp_path)
    assert cli.main([*args, "--tfds-data-dir", str(tmp_path / "tfds")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"keras-resnet {args[0]}: error: Dataset 'cifar10' is not prepared")
    assert err.count("\n") == 1 and "tfds build cifar10" in err, err
    assert not (tmp_path / "runs").exists()
