"""common/ is sans-I/O: importing it must not pull in the event loop, sockets or PortAudio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

COMMON = Path(__file__).resolve().parents[2] / "common"


def test_common_imports_no_io_modules() -> None:
    """Every module of the folder and its subpackages, found by listing them (a new one
    cannot be left out)."""
    modules = sorted(
        ".".join(p.relative_to(COMMON).with_suffix("").parts).removesuffix(".__init__")
        for p in COMMON.rglob("*.py")
        if p != COMMON / "__init__.py"
    )
    assert {"protocol", "wav", "jitter", "connection.sender"} <= set(modules)
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module('micwire.common.' + m)\n"
        "io = ('asyncio', 'socket', 'sounddevice', 'websockets', 'aiohttp')\n"
        "print(','.join(m for m in io if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
