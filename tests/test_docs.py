"""Every code example in README.md and docs/*.md runs (so the docs never rot).

Blocks fenced as ```python run in order in one namespace per file; lines
starting with ``>>>`` are checked as doctests (their output must match).
Blocks fenced as ```text or ```console are not run.
"""

import doctest
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(path):
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_markdown_examples(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # examples that write files write them here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns = {"__name__": f"docs_{path.stem}"}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for i, block in enumerate(_blocks(path)):
        if ">>>" in block:
            test = parser.get_doctest(block, ns, f"{path.name}[{i}]", str(path), 0)
            result = runner.run(test, clear_globs=False)
            ns.update(test.globs)      # DocTest copies its globals: carry names to later blocks
            assert result.failed == 0, f"{path.name}: doctest block {i} failed (see output above)"
        else:
            exec(compile(block, f"{path.name}[block {i}]", "exec"), ns)


def test_every_doc_has_examples():
    for path in FILES:
        if path.name in ("README.md",) or os.path.getsize(path) == 0:
            continue
        assert _blocks(path), f"{path.name} has no runnable ```python example"
