"""The tooling sees the code as it lies on disk: every import inside the product is
relative and resolves to a file, mypy follows them without the install (a type error
across packages is caught, not hidden behind an unresolved import), and ``python -m
micwire`` is the command."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("app", "common", "sender", "receiver")


def product_files() -> list[Path]:
    files = [ROOT / "__init__.py", ROOT / "__main__.py"]
    return files + sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def resolves(path: Path, node: ast.ImportFrom) -> list[str]:
    """What of a relative import is not on disk (a module or a name of a package)."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    target = base.joinpath(*node.module.split(".")) if node.module else base
    if target.with_suffix(".py").is_file():
        return []
    if not (target / "__init__.py").is_file():
        return [f"{node.module or '.'} (no {target.relative_to(ROOT)}.py nor package)"]
    # from a package: each name is a module in it, or defined in its __init__
    init = (target / "__init__.py").read_text()
    return [
        alias.name
        for alias in node.names
        if not (target / f"{alias.name}.py").is_file()
        and not (target / alias.name / "__init__.py").is_file()
        and alias.name not in init
    ]


def test_every_import_inside_the_product_is_relative_and_on_disk() -> None:
    problems = []
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.level:
                problems += [f"{where}: {missing}" for missing in resolves(path, node)]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("micwire"):
                problems.append(f"{where}: absolute import of {node.module}")
            elif isinstance(node, ast.Import):
                problems += [
                    f"{where}: absolute import of {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] == "micwire"
                ]
    assert problems == []


def test_mypy_follows_the_folders_without_the_install(tmp_path: Path) -> None:
    """A copy of the product in a folder of its own, with a module that misuses another
    package's code: mypy (the project's settings) reports both errors."""
    tree = tmp_path / "checkout"
    tree.mkdir()
    for name in ("__init__.py", "__main__.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tree / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tree / folder, ignore=shutil.ignore_patterns("web"))
    (tree / "receiver" / "probe.py").write_text(
        "from ..common.protocol import StreamParams\n"
        "from .storage import find_previous\n"
        "frames: str = StreamParams().frame_samples\n"
        "find_previous('not a path', 'mic', 'id', 'secret', StreamParams())\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "receiver/probe.py"],
        capture_output=True,
        text=True,
        cwd=tree,
    )
    assert 'Incompatible types in assignment (expression has type "int"' in done.stdout
    assert 'Argument 1 to "find_previous" has incompatible type "str"' in done.stdout


def test_python_m_micwire_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "micwire", "--help"], capture_output=True, text=True, check=True
    )
    assert "receive" in done.stdout and "send" in done.stdout


def test_a_worker_sets_up_its_process_without_the_cli() -> None:
    """A receiver's worker runs on the shared runtime (event loop, GIL switch interval,
    signals), not on the command line's parser and commands."""
    code = (
        "import sys, micwire.app.worker\n"
        "print(','.join(m for m in ('micwire.app.cli', 'micwire.app.options') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
