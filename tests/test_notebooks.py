"""Every notebook runs top to bottom (nbclient, kernel python3) with KERAS_RESNET_SMOKE=1,
and prints the result it exists to show."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
# notebook -> text its outputs must contain
KEY_OUTPUTS = {
    "01_quickstart.ipynb": "Top-5 classes",
    "02_train_cifar.ipynb": "Test accuracy:",
    "03_transfer_learning.ipynb": "Fine-tuned test accuracy:",
    "04_tuning.ipynb": "Best trial",
    "05_serving.ipynb": "Serving predictions",
    "06_backbones.ipynb": "GunPoint test accuracy:",
}


def test_every_notebook_is_covered():
    assert sorted(n for n in os.listdir(NOTEBOOK_DIR) if n.endswith(".ipynb")) == sorted(KEY_OUTPUTS)


def _text(nb):
    chunks = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            chunks.append(output.get("text", ""))
            chunks.append(output.get("data", {}).get("text/plain", ""))
    return "".join(chunks)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KEY_OUTPUTS))
def test_notebook_runs_in_smoke_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_SMOKE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel imports this checkout's keras_resnet (installed or not)
    root = os.path.dirname(NOTEBOOK_DIR)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert KEY_OUTPUTS[name] in _text(nb)
