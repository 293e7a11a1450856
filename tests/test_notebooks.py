"""Every notebook in notebooks/ runs top to bottom on a tiny end-to-end quickstart run.

A module-scoped fixture runs ``python train.py`` (the whole pipeline: data -> tokenizer -> MLE ->
GRPO -> eval) with 3 steps per stage on 20 short episodes into temporary folders, then each
notebook is executed with nbclient in a ``python3`` kernel of this interpreter, with cwd
notebooks/ and WM_RUNS_DIR / WM_DATA_DIR pointing at the tiny run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TINY_RUN = ["stage.max_steps=3", "stage.val_check_interval=3", "data.source.num_episodes=20",
            "data.source.episode_length=20", "trainer.enable_progress_bar=false", "num_threads=1"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory) -> dict:
    """Environment whose WM_RUNS_DIR/WM_DATA_DIR hold a finished tiny quickstart run."""
    tmp = tmp_path_factory.mktemp("notebooks")
    env = {**os.environ, "WM_RUNS_DIR": str(tmp / "runs"), "WM_DATA_DIR": str(tmp / "data"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend turns figures into outputs
    proc = subprocess.run([sys.executable, "train.py", *TINY_RUN], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, \
        f"tiny quickstart failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for stage in ("tokenizer", "mle", "grpo"):
        assert (tmp / "runs" / "pusht" / stage / "checkpoints" / "last.ckpt").exists()
    return env


def test_notebooks_are_stripped_and_valid():
    import nbformat

    assert len(NOTEBOOKS) == 5, [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, \
                    f"{path.name}: commit notebooks with outputs cleared"


def _execute(path_or_nb, env: dict, cwd: Path = ROOT / "notebooks"):
    """Run a notebook in a fresh ``python3`` kernel with cwd ``cwd``; raise on any cell error.

    jupyter_client replaces a kernelspec's ``python`` command with ``sys.executable``, so the
    kernel runs in this interpreter's environment (checked by test_kernel_is_this_interpreter).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = path_or_nb if isinstance(path_or_nb, nbformat.NotebookNode) else \
        nbformat.read(path_or_nb, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)  # the kernel process's environment
    return nb


def test_kernel_is_this_interpreter():
    from nbformat.v4 import new_code_cell, new_notebook

    cell = new_code_cell("import os, sys; print(sys.prefix); print(os.getcwd())")
    nb = _execute(new_notebook(cells=[cell]), dict(os.environ))
    prefix, cwd = nb.cells[0].outputs[0]["text"].split()
    assert Path(prefix) == Path(sys.prefix)
    assert Path(cwd) == ROOT / "notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tiny_env):
    nb = _execute(path, tiny_env)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {})
               for o in outputs), f"{path.name} drew no figure"


def test_notebook_says_what_to_run_when_outputs_are_missing(tmp_path):
    """Without runs, the first cell fails with a message that names `python train.py`."""
    from nbclient.exceptions import CellExecutionError

    env = {**os.environ, "WM_RUNS_DIR": str(tmp_path / "none"), "PYTHONPATH": str(ROOT)}
    with pytest.raises(CellExecutionError, match="python train.py") as err:
        _execute(NOTEBOOKS[0], env)
    assert str(tmp_path / "none" / "pusht" / "tokenizer") in str(err.value)
