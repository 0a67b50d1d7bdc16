"""The example notebook (clients/python/examples/quickstart.ipynb) executed against the live
lensd with nbclient: every cell runs without an error and the heat map comes out as a PNG."""
import os
import pathlib
import shutil

import nbclient
import nbformat

import lensd

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LENSD_ADDRESS", server.address)
    monkeypatch.setenv("LENSD_TOKEN", server.tokens["admin"])
    # The kernel imports the same lensd as this test, wherever it is installed.
    package_root = str(pathlib.Path(lensd.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    notebook = nbformat.read(EXAMPLE, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    assert "SUCCEEDED" in str([o.get("data", {}).get("text/plain") for o in outputs])
    artifacts = os.environ.get("LENSD_TEST_ARTIFACTS")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(tmp_path / "heatmap.png", os.path.join(artifacts, "notebook_heatmap.png"))
        nbformat.write(notebook, os.path.join(artifacts, "quickstart.executed.ipynb"))


INTERVENTIONS = EXAMPLE.parent / "interventions.ipynb"


def test_the_interventions_notebook_runs(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LENSD_ADDRESS", server.address)
    monkeypatch.setenv("LENSD_TOKEN", server.tokens["read"])
    package_root = str(pathlib.Path(lensd.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    notebook = nbformat.read(INTERVENTIONS, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = str([o.get("text", "") for o in outputs])
    assert "steered:" in text and "unedited:" in text and "patched runs" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    artifacts = os.environ.get("LENSD_TEST_ARTIFACTS")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(tmp_path / "patching.png", os.path.join(artifacts, "notebook_patching.png"))
        nbformat.write(notebook, os.path.join(artifacts, "interventions.executed.ipynb"))
