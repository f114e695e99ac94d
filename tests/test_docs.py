"""The documentation runs as written: docs/tutorial.ipynb top to bottom in a Jupyter kernel, and
every fenced ```python block of README.md and docs/*.md, each file's blocks in order in one
fresh interpreter (as a reader pasting them into one session would). A block that needs MNIST
or a GPU is skipped when the line before its fence is ``<!-- no-test -->``; shell blocks and
indented blocks are not run here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
# the whole notebook, and any one cell: it takes about two minutes on 2 cores, the limit leaves
# room for a busy machine
NOTEBOOK_SECONDS = 900
BLOCKS_SECONDS = 600  # all the Python blocks of one Markdown file
SKIP_MARK = "<!-- no-test -->"
FENCE = re.compile(r"^(?P<indent>\s*)```python\s*$")
CLOSE = re.compile(r"^\s*```\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: its source (dedented) and its fence's line (1-based)."""

    line: int
    code: str
    skipped: bool


def python_blocks(path: Path) -> list[Block]:
    """Every ```python block of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, indent = i, len(fence["indent"])
        i += 1
        while i < len(lines) and not CLOSE.match(lines[i]):
            i += 1
        code = "\n".join(line[indent:] for line in lines[start + 1 : i]) + "\n"
        skipped = start > 0 and lines[start - 1].strip() == SKIP_MARK
        blocks.append(Block(start + 1, code, skipped))
        i += 1
    return blocks


# runs the blocks of one file in one namespace; each block is compiled with blank lines before
# it, so a traceback names the Markdown file and the line in it
RUNNER = textwrap.dedent(
    """
    import json, sys
    spec = json.load(open(sys.argv[1]))
    namespace = {"__name__": "__main__"}
    for block in spec["blocks"]:
        source = "\\n" * block["line"] + block["code"]
        exec(compile(source, spec["file"], "exec"), namespace)
    """
)


def run_blocks(path: Path, blocks: list[Block], workdir: Path) -> subprocess.CompletedProcess:
    """The runnable blocks of ``path`` in one fresh interpreter whose working folder is
    ``workdir``: a relative ``runs/...`` lands there, not in the repository."""
    spec = workdir / "blocks.json"
    spec.write_text(
        json.dumps(
            {
                "file": str(path),
                "blocks": [{"line": b.line, "code": b.code} for b in blocks if not b.skipped],
            }
        )
    )
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(workdir),  # nothing a block does lands in the user's home
        "MPLBACKEND": "Agg",
        "VAELAB_CACHE": str(workdir / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(spec)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCKS_SECONDS,
    )


def _markdown_files() -> list:
    readme = pytest.param(ROOT / "README.md", id="README.md")
    docs = [pytest.param(p, id=f"docs/{p.name}") for p in sorted((ROOT / "docs").glob("*.md"))]
    return [readme, *docs]


@pytest.mark.parametrize("path", _markdown_files())
def test_markdown_python_blocks_run(path, tmp_path):
    blocks = python_blocks(path)
    if not any(not b.skipped for b in blocks):
        pytest.skip(f"{path.name}: no ```python block, or all marked {SKIP_MARK}")
    result = run_blocks(path, blocks, tmp_path)
    assert result.returncode == 0, (
        f"a ```python block of {path.name} failed:\n{result.stderr[-3000:]}"
    )


def test_blocks_found_in_order_and_marked(tmp_path):
    """The extractor: ```python fences only (indented ones too), in order; the mark skips the
    block right after it only; a failing block names its Markdown line."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# title\n\n"
        "```python\nx = 1\n```\n\n"
        "```sh\nvaelab --version\n```\n\n"
        f"{SKIP_MARK}\n```python\nimport not_installed_anywhere\n```\n\n"
        "- a list item:\n\n  ```python\n  y = x + 1\n  ```\n\n"
        "```python\nassert y == 2\nprint(undefined_name)\n```\n"
    )
    blocks = python_blocks(doc)
    found = [(b.line, b.skipped) for b in blocks]
    assert found == [(3, False), (12, True), (18, False), (22, False)]
    assert blocks[2].code == "y = x + 1\n"
    work = tmp_path / "work"
    work.mkdir()
    result = run_blocks(doc, blocks, work)
    assert result.returncode == 1
    assert "NameError: name 'undefined_name' is not defined" in result.stderr
    assert f'File "{doc}", line 24' in result.stderr  # the Markdown file's own line


def test_tutorial_is_committed_without_outputs():
    """Outputs stay out of the repository: the notebook is text, small and reviewable."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert NOTEBOOK.stat().st_size < 100_000


def test_tutorial_runs_top_to_bottom(tmp_path, monkeypatch):
    """docs/tutorial.ipynb in a python3 kernel, every cell without error: the kernel is this
    environment's own ipykernel (checked by a last cell), its Jupyter and IPython folders are
    temporary, and the runs it trains are deleted at its end."""
    for name, folder in (
        ("JUPYTER_CONFIG_DIR", "jupyter-config"),
        ("JUPYTER_DATA_DIR", "jupyter-data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
        ("IPYTHONDIR", "ipython"),
        ("TMPDIR", "tmp"),
    ):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(name, str(tmp_path / folder))  # the kernel inherits them
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)", id="which-python"))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=NOTEBOOK_SECONDS,
        resources={"metadata": {"path": str(work)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    assert time.perf_counter() - start < NOTEBOOK_SECONDS

    assert nb.cells[-1].outputs[0]["text"].strip() == sys.prefix
    images = sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )
    assert images >= 12  # a picture on every step
    assert not any(work.iterdir())  # nothing written beside the notebook
    assert not list((tmp_path / "tmp").rglob("model.safetensors"))  # the runs were removed
