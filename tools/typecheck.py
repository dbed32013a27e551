"""``make lint``'s type check: mypy --strict on the product as it lies on disk.

The repository's root is the ``micwire`` package and every import inside the product is
relative, so mypy follows them through the folders themselves; it names the package after
the checkout's folder. A folder whose name cannot be a package name (``micwire-main``) is
seen through one symbolic link named ``micwire`` in a temporary directory instead.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("__init__.py", "__main__.py", "app", "common", "sender", "receiver")


def mypy(*extra: str) -> int:
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    if ROOT.name.isidentifier():
        return subprocess.run([*command, *extra, *PRODUCT], cwd=ROOT).returncode
    with tempfile.TemporaryDirectory() as place:
        (Path(place) / "micwire").symlink_to(ROOT, target_is_directory=True)
        files = [f"micwire/{name}" for name in PRODUCT]
        return subprocess.run([*command, *extra, *files], cwd=place).returncode


if __name__ == "__main__":
    sys.exit(mypy(*sys.argv[1:]))
