"""common/ is sans-I/O: importing it must not pull in the event loop, sockets or PortAudio."""

from __future__ import annotations

import subprocess
import sys


def test_common_imports_no_io_modules() -> None:
    code = (
        "import sys, micwire.common.protocol, micwire.common.codecs, micwire.common.framing, "
        "micwire.common.assembly, micwire.common.jitter, micwire.common.levels, "
        "micwire.common.names, micwire.common.audiofile, micwire.common.devices, "
        "micwire.common.spool, micwire.common.stats\n"
        "io = ('asyncio', 'socket', 'sounddevice', 'websockets')\n"
        "bad = [m for m in io if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
