"""The notebooks run top to bottom on the demo data, as a reader would run them."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_both_notebooks_are_here():
    assert [p.name for p in NOTEBOOKS] == ["custom_family.ipynb", "explore.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' throwaway databases
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    if path.name == "explore.ipynb":
        assert "QA written    1051 rows" in text and "the answer is the first choice in 47-53% of each family" in text
        assert len(images) == 3  # distributions, margins, example grid
    else:
        assert "families[0].relation.holds: unknown column 'a_areaa' in 'a_areaa > b_area' (did you mean a_area?)" in text
        assert "every answer names the larger box" in text and len(images) == 1
