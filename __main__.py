"""``python -m micwire``: the same as the ``micwire`` command."""

from __future__ import annotations

import sys

from .app.cli import main

sys.exit(main())
