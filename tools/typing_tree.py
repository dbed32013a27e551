"""Build .typing/micwire: a link tree of the installed layout for static tools.

The product's folders stay beside pyproject.toml and install as micwire.* through
setuptools' package-dir mapping; an editable install serves them through an import hook
that mypy (and most editors) cannot see. This tree of symbolic links lays the same files
out as micwire/{__init__.py,cli.py,...,common,sender,receiver}; pyproject.toml points
mypy's search path at it. Usage: python tools/typing_tree.py [TARGET_DIR]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: package name in micwire -> folder beside pyproject.toml
SUBPACKAGES = ("common", "sender", "receiver")


def build(target: Path) -> Path:
    package = target / "micwire"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for module in sorted((ROOT / "app").glob("*.py")):
        (package / module.name).symlink_to(module)
    for name in SUBPACKAGES:
        (package / name).symlink_to(ROOT / name, target_is_directory=True)
    return package


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".typing"))
