"""Where micwire keeps what must outlive a process, by the XDG Base Directory rules."""

from __future__ import annotations

import os
from pathlib import Path


def state_home() -> Path:
    """``$XDG_STATE_HOME/micwire`` (default ``~/.local/state/micwire``): state that is not
    worth backing up but must survive a restart (resume secrets, ended logins)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "micwire"
