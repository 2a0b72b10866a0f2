"""``keras-resnet convert SRC --model NAME --output W.weights.h5``.

Converts a torchvision / timm checkpoint, a keras-hub ResNetBackbone preset folder (backbone
only: ``--skip-classifier``) or a named published set into a Keras weights
file for one of our named models and prints the check it made: how many tensors matched,
and, when torch with torchvision / timm is importable, the largest logit difference between
the source model and ours on a random probe batch. TensorFlow loads only after the arguments
are parsed (``--help`` stays light).
"""

from __future__ import annotations

import os

from keras_resnet.cli import ArgumentParser
from keras_resnet.weights.convert import REFERENCE_MODULES

PROBE_SIZE = 224


def _parser(command):
    p = ArgumentParser(
        prog=f"keras-resnet {command}",
        description="Convert a torchvision / timm checkpoint into a Keras .weights.h5 file.")
    p.add_argument("source", metavar="SRC",
                   help="a .pth / .pt / .bin / .safetensors checkpoint, a keras-hub "
                        "ResNetBackbone preset folder, or a published set such as "
                        "torchvision:IMAGENET1K_V2 or timm:resnet50.a1_in1k")
    p.add_argument("--model", required=True, help="a name from 'keras-resnet list --weights'")
    p.add_argument("--output", required=True, help="the Keras weights file to write (*.weights.h5)")
    p.add_argument("--skip-classifier", action="store_true",
                   help="leave the checkpoint's classifier out (the file then has no top)")
    p.add_argument("--no-probe", action="store_true",
                   help="do not compare logits with the source library even if importable")
    p.add_argument("--probe-python", default=None, metavar="PYTHON",
                   help="interpreter with torch and torchvision / timm for the probe "
                        "(default: this one)")
    return p


def _check_args(args):
    from keras_resnet.weights import checkpoint, keras_hub, published

    if not args.output.endswith(".weights.h5"):
        raise ValueError(f"--output must end in .weights.h5. Received: --output {args.output}")
    if args.model not in REFERENCE_MODULES:
        raise ValueError(f"--model must be one of {sorted(REFERENCE_MODULES)} (models with a "
                         f"torchvision / timm counterpart). Received: --model {args.model}")
    if published.is_set_name(args.source):
        return published.find_set(args.model, args.source)
    if keras_hub.is_preset(args.source):
        if not args.skip_classifier:
            raise ValueError("a keras-hub backbone preset has no classifier: add "
                             f"--skip-classifier. Received: {args.source}")
        return None
    if not (os.path.isfile(args.source) and checkpoint.is_checkpoint(args.source)):
        raise ValueError("SRC must be an existing checkpoint (a torch.save file in the zip or "
                         "legacy layout under any name, .safetensors, or a zip of one), a "
                         f"keras-hub preset folder or a published set. Received: {args.source}")
    return None


# Runs in a child interpreter: torch and TensorFlow in one process can crash each other.
_PROBE = """
import sys
import numpy as np
import torch
library, ctor, state_file, x_file, out_file = sys.argv[1:]
if library == "torchvision":
    import torchvision
    net = getattr(torchvision.models, ctor)(weights=None)
else:
    import timm
    net = timm.create_model(ctor, pretrained=False)
with np.load(state_file) as state:
    net.load_state_dict({k: torch.from_numpy(state[k]) for k in state.files})
with torch.no_grad():
    np.save(out_file, net.eval()(torch.from_numpy(np.load(x_file))).numpy())
"""


def _reference_logits(model_name, state, x_nchw, python):
    """``(logits, what)`` of the torchvision / timm module holding ``state``, computed by
    ``python`` (None when it lacks torch or the library: ``(None, reason)``)."""
    import subprocess
    import sys
    import tempfile

    import numpy as np

    library, ctor = REFERENCE_MODULES[model_name]
    python = python or sys.executable
    check = subprocess.run([python, "-c", f"import torch, {library}"], capture_output=True)
    if check.returncode:
        return None, f"torch / {library} not importable by {python}"
    with tempfile.TemporaryDirectory() as d:
        files = [os.path.join(d, n) for n in ("state.npz", "x.npy", "logits.npy")]
        np.savez(files[0], **state)
        np.save(files[1], x_nchw)
        run = subprocess.run([python, "-c", _PROBE, library, ctor, *files], capture_output=True,
                             text=True)
        if run.returncode:
            raise OSError(f"the {library} probe failed: {run.stderr.strip().splitlines()[-1:]}")
        return np.load(files[2]), f"{library} {ctor}"


def convert(source: str, model_name: str, output: str, *, skip_classifier: bool = False,
            probe: bool = True, probe_python: str | None = None) -> dict:
    """Convert checkpoint ``source`` for ``model_name`` into ``output`` (written atomically).
    Returns the counts of :func:`keras_resnet.weights.load_checkpoint` and, when the source
    library is importable, ``probe_max_abs_diff`` and ``probe_reference``."""
    import numpy as np

    from keras_resnet.models import get_model
    from keras_resnet.utils import atomic_path
    from keras_resnet.weights import checkpoint, keras_hub, load_checkpoint

    if keras_hub.is_preset(source):  # a backbone: no classifier, no probe
        model = get_model(model_name, include_top=False, weights=None)
        _, state = keras_hub.read_preset(source)
        porter = keras_hub.port_preset(model, state, f"keras-hub preset {source}")
        porter.apply()
        report = {"tensors": len(porter.assignments), "variables": len(porter.assignments),
                  "ignored": 0}
        probe = False
    else:
        opened = checkpoint.open_checkpoint(source)
        model = get_model(model_name, include_top=not skip_classifier,
                          classifier_activation=None, weights=None)
        report = load_checkpoint(model, source, skip_classifier=skip_classifier, state=opened)
        state = {k[len(report["prefix"]):]: v for k, v in opened.state.items()}
    with atomic_path(output, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    if probe and not skip_classifier:
        x = np.random.default_rng(0).standard_normal((2, 3, PROBE_SIZE, PROBE_SIZE)).astype("float32")
        reference, what = _reference_logits(model_name, state, x, probe_python)
        report["probe_reference"] = what
        if reference is not None:
            ours = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
            report["probe_max_abs_diff"] = float(np.abs(ours - reference).max())
            report["probe_logit_abs_max"] = float(np.abs(reference).max())
    return report


def cli_main(command: str, argv: list) -> int:
    args = _parser(command).parse_args(argv)
    weight_set = _check_args(args)
    source = args.source
    if weight_set is not None:
        from keras_resnet.weights.loading import fetch_set

        source = fetch_set(weight_set)
    report = convert(source, args.model, args.output, skip_classifier=args.skip_classifier,
                     probe=not args.no_probe, probe_python=args.probe_python)
    print(f"matched {report['tensors']} tensors to {report['variables']} variables of "
          f"{args.model} ({report['ignored']} bookkeeping / left-out tensors ignored)")
    if report.get("container"):
        print(f"state dict under {report['container']!r}; ignored beside it: "
              + (", ".join(report["ignored_entries"]) or "nothing"))
    if report.get("prefix"):
        print(f"stripped the prefix {report['prefix']!r} shared by every name")
    if "probe_max_abs_diff" in report:
        print(f"probe: max |logit difference| vs {report['probe_reference']} = "
              f"{report['probe_max_abs_diff']:.3g} (logits up to {report['probe_logit_abs_max']:.3g}) "
              f"on a random 2x{PROBE_SIZE}x{PROBE_SIZE} batch")
    elif "probe_reference" in report:
        print(f"probe skipped: {report['probe_reference']}")
    print(f"wrote {args.output}")
    return 0
