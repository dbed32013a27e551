"""The tooling sees the code: mypy resolves micwire.* (a type error across packages is
caught, not hidden behind an unresolved import), ruff passes, and the version is defined
once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_sees_across_packages(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "typing_tree.py")], check=True)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from micwire.common.protocol import StreamParams\n"
        "from micwire.receiver.storage import find_previous\n"
        "frames: str = StreamParams().frame_samples\n"
        "find_previous('not a path', 'mic', 'id', 'secret', StreamParams())\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(probe)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert 'Incompatible types in assignment (expression has type "int"' in done.stdout
    assert 'Argument 1 to "find_previous" has incompatible type "str"' in done.stdout


def test_python_m_micwire_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "micwire", "--help"], capture_output=True, text=True, check=True
    )
    assert "receive" in done.stdout and "send" in done.stdout
