"""Peak memory and time of reading checkpoints, for one or more copies of the package.

    python benchmarks/checkpoint_memory.py ROOT [ROOT ...] [--rounds 2] [--bomb-mib 256]

Each ROOT is a folder holding a ``keras_resnet`` package (a checkout of main and one of a
branch, say). The script writes, into a temporary folder, 64 MiB of float32 tensors as a
``torch.save`` zip file and as a legacy file inside a training checkpoint, and a zip bomb:
a ``.pth`` whose first storage record inflates to ``--bomb-mib`` MiB of zeros while the
pickle declares the genuine 37 KB tensor (``tests/torch_files.write_torch_bomb``). Every
(root, file) pair is read by ``keras_resnet.weights.checkpoint.read_checkpoint`` in a fresh
interpreter, roots alternating within each round; it prints the growth of the peak RSS
(``tests/torch_files.MEASURE_READ``) over the tensor bytes, the seconds, and the
error if one was raised.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.torch_files import (  # noqa: E402
    MEASURE_READ,
    ZEROS_CRC32,
    write_torch_bomb,
    write_torch_legacy,
    write_torch_zip,
)


def files(folder, bomb_mib):
    rng = np.random.default_rng(0)
    state = OrderedDict((f"layer{i}.weight", rng.standard_normal(2 << 20, dtype=np.float32))
                        for i in range(8))
    out = {"zip 64 MiB": os.path.join(folder, "big.pth"),
           "legacy 64 MiB": os.path.join(folder, "big.th"),
           f"bomb {bomb_mib} MiB": os.path.join(folder, "bomb.pth")}
    write_torch_zip(out["zip 64 MiB"], state)
    write_torch_legacy(out["legacy 64 MiB"], {"state_dict": state, "epoch": 1})
    small = OrderedDict([("conv1.weight", np.ones((64, 3, 7, 7), np.float32)),
                         ("bn1.weight", np.ones(64, np.float32))])
    write_torch_bomb(out[f"bomb {bomb_mib} MiB"], small, bomb_mib=bomb_mib)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--bomb-mib", type=int, default=256)
    args = p.parse_args()
    if args.bomb_mib not in ZEROS_CRC32:
        import zlib

        crc = 0
        for _ in range(args.bomb_mib):
            crc = zlib.crc32(bytes(1 << 20), crc)
        ZEROS_CRC32[args.bomb_mib] = crc
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for label, path in files(folder, args.bomb_mib).items():
                for root in (args.roots if round_ % 2 == 0 else args.roots[::-1]):
                    run = subprocess.run([sys.executable, "-c", MEASURE_READ, path], capture_output=True,
                                         text=True, env=dict(os.environ, PYTHONPATH=root),
                                         cwd=folder)  # (not a folder with a package in it)
                    result = json.loads(run.stdout)
                    ratio = result["growth"] / result["bytes"] if result["bytes"] else None
                    print(json.dumps({"round": round_, "file": label, "root": root, **result,
                                      "growth_over_tensors": ratio}))


if __name__ == "__main__":
    main()
