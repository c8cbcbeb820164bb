"""The quickstart notebook runs top to bottom (reduced budget), so it never rots, and it is
committed with the outputs of a full-budget run (notebooks/execute.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def load_executor():
    spec = importlib.util.spec_from_file_location("execute_notebook", ROOT / "notebooks" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def text_of(nb) -> str:
    return "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )


def test_quickstart_notebook_runs_top_to_bottom():
    nb = load_executor().execute(NOTEBOOK, quick=True, timeout_s=600)
    outputs = text_of(nb)
    assert "compile" in outputs and "env steps/s" in outputs
    assert "final eval return per seed" in outputs
    assert "IQM" in outputs and "lr=0.001" in outputs
    assert "total_steps=20000" in outputs  # the quick budget reached the kernel
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors


def test_committed_notebook_shows_a_full_run():
    """A reader on GitHub sees results: every code cell after the install one has outputs, from
    the full budget, a learning-curve image among them, and no errors."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.get("outputs") for cell in code[1:])
    assert "total_steps=300000" in text_of(nb) and "final eval return per seed" in text_of(nb)
    outs = [out for cell in code for out in cell["outputs"]]
    assert any("image/png" in out.get("data", {}) for out in outs)
    assert not [out for out in outs if out.get("output_type") == "error"]
