"""common/ is sans-I/O: importing it must not pull in the event loop, sockets or PortAudio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

COMMON = Path(__file__).resolve().parents[2] / "common"


def test_common_imports_no_io_modules() -> None:
    """Every module of the folder, found by listing it (a new one cannot be left out)."""
    modules = sorted(p.stem for p in COMMON.glob("*.py") if p.stem != "__init__")
    assert {"protocol", "wav", "jitter"} <= set(modules)
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module('micwire.common.' + m)\n"
        "io = ('asyncio', 'socket', 'sounddevice', 'websockets', 'aiohttp')\n"
        "print(','.join(m for m in io if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
