"""The house rules of docs/architecture.md, enforced: what each room may import, module size,
and a leaderboard that runs without torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medbench.config import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "medbench"
# room -> modules it must never import (prefix match on the imported module's name)
FORBIDDEN = {
    "tasks": ("medbench.tracking", "mlflow"),
    "leaderboard": ("torch", "lightning", "torchmetrics", "medbench.tasks", "medbench.models",
                    "medbench.data", "medbench.train"),
    "data": ("medbench.models", "medbench.tasks", "medbench.tracking", "medbench.train"),
    "models": ("medbench.data", "medbench.tasks", "medbench.tracking"),
    "metrics": ("medbench.tasks", "medbench.tracking", "medbench.data"),
}
# modules the torch-free leaderboard and config composer load: no torch at import time
IMPORT_LIGHT = ("family.py", "plugins.py", "legacy.py", "catalog.py", "config.py",
                "tasks/__init__.py", "tasks/classification/__init__.py",
                "tasks/classification/family.py", "tasks/classification/ranking.py",
                "tasks/segmentation/__init__.py", "tasks/segmentation/family.py",
                "tasks/segmentation/ranking.py", "tasks/localization/__init__.py",
                "tasks/localization/family.py", "tasks/localization/ranking.py")
MAX_LINES = 300


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _violations(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names for f in forbidden if n == f or n.startswith(f + "."))


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_only_what_they_may(room):
    for path in (PACKAGE / room).rglob("*.py"):
        found = _violations(_imports(path), FORBIDDEN[room])
        assert not found, f"{path.relative_to(PACKAGE)} imports {found}"


@pytest.mark.parametrize("module", IMPORT_LIGHT)
def test_declaration_modules_import_no_torch_at_import_time(module):
    found = _violations(_imports(PACKAGE / module, top_level_only=True),
                        ("torch", "lightning", "torchmetrics", "mlflow"))
    assert not found, f"{module} imports {found} at module level"


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_leaderboard_builds_without_loading_torch(tmp_path):
    code = ("import sys\n"
            "from medbench.leaderboard.build import write_leaderboards\n"
            f"write_leaderboards('sqlite:///{tmp_path}/mlflow.db', '{tmp_path}')\n"
            "heavy = [m for m in ('torch', 'lightning', 'torchmetrics') if m in sys.modules]\n"
            "print('loaded:', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded: []" in out.stdout
    assert (tmp_path / "leaderboards" / "table12_segmentation.md").is_file()


def test_the_architecture_document_names_every_room():
    text = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rooms = [p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")]
    modules = [p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("_")]
    missing = [name for name in [*rooms, *modules] if name not in text]
    assert not missing, f"docs/architecture.md does not mention {missing}"
    for rule in FORBIDDEN:
        assert f"`{rule}/`" in text


def test_importing_the_stack_calls_no_server():
    """No network at run time: albumentations asked PyPI for its latest version on import (a
    thread, 2 s timeout), in every process medbench started; `import medbench` turns it off."""
    probe = ("import socket, threading, time\n"
             "calls = []\n"
             "real = socket.create_connection\n"
             "socket.create_connection = lambda *a, **k: calls.append(a[0]) or real(*a, **k)\n"
             "import medbench.train\n"
             "import albumentations\n"
             "for thread in threading.enumerate():\n"
             "    if thread is not threading.main_thread() and not thread.daemon: thread.join(5)\n"
             "time.sleep(1)\n"
             "print(calls)\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
