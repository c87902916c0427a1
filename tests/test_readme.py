"""Every Python block of README.md runs as copied: on its own, as a script, in an
empty folder (a newcomer's first hour). Blocks that import a peer framework that
is not installed skip, saying which."""
import ast
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S) \
    if README.exists() else []
# what a block's imports need besides themselves (Keras runs on the torch backend
# where TensorFlow is missing, as the README's block says)
ALSO_NEEDS = {"keras": ("torch",), "distributed": ("dask",)}
# what a block's calls need that it does not import (PyTorch's default ONNX
# exporter runs on onnxscript; from_onnx reads files with onnx)
CALLS_NEED = {"torch.onnx.export(": ("onnx", "onnxscript"), "from_onnx(": ("onnx",)}


def imported(code):
    """The top-level modules a block imports."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_readme_has_its_blocks():
    if not README.exists():
        pytest.skip("README.md is not beside the tests (an installed copy of them)")
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_copied(index, tmp_path):
    code = BLOCKS[index]
    needed = imported(code)
    needed |= {extra for name in needed for extra in ALSO_NEEDS.get(name, ())}
    needed |= {extra for call, extras in CALLS_NEED.items() if call in code for extra in extras}
    missing = sorted(name for name in needed if importlib.util.find_spec(name) is None)
    if missing:
        pytest.skip(f"README block {index + 1} needs {', '.join(missing)}")
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    try:
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    except OSError as exc:      # (an emulated interpreter that cannot start itself)
        pytest.skip(f"cannot start {sys.executable} as a subprocess here: {exc}")
    assert out.returncode == 0, f"README block {index + 1}:\n{code}\n{out.stderr[-3000:]}"
    assert "Sending large graph" not in out.stderr, out.stderr[-3000:]
