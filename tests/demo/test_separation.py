"""The demo has a home of its own: `framewire.common` and the edge agent never import it.

A device installs `framewire[agent]`. The wheel holds every package's files,
but the agent's code imports only `framewire.common`, the contract
(`framewire.v1`) and itself, so nothing of the demo (its apt and scikit-image
fetching) or of the servers is ever loaded there; `common` imports no service.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT

# Which framewire packages each folder's code may import.
ALLOWED = {
    "services/common/framewire": ("framewire.common", "framewire.v1"),
    "services/edge_agent/framewire": ("framewire.common", "framewire.v1", "framewire.edge_agent"),
}


def framewire_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``framewire...`` module a file imports, anywhere in it (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] == "framewire"]
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_common_and_the_agent_import_no_demo_and_no_other_service(folder: str) -> None:
    files = sorted((REPO_ROOT / folder).rglob("*.py"))
    assert files
    wrong = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
        for path in files
        for line, name in framewire_imports(path)
        if not any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED[folder])
    ]
    assert wrong == []


def test_the_import_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from framewire.demo.media import demo_video\n")
    assert framewire_imports(source) == [(2, "framewire.demo.media")]


def test_loading_every_agent_and_common_module_loads_nothing_of_the_demo_or_servers() -> None:
    # Every module of both packages, and the `framewire` command itself, in a
    # fresh interpreter: what a device would load at most.
    script = (
        "import importlib, pkgutil, sys\n"
        "import framewire.cli, framewire.common, framewire.edge_agent\n"
        "for package in (framewire.common, framewire.edge_agent):\n"
        "    for module in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(module.name)\n"
        "print(len([m for m in sys.modules if m.startswith('framewire.edge_agent.')]))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'skimage' or\n"
        "    m.startswith(('framewire.demo', 'framewire.ingest', 'framewire.inference'))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    agent_modules, others = loaded.stdout.splitlines()
    assert int(agent_modules) >= 10  # the walk really imported the agent's modules
    assert others == "[]"
