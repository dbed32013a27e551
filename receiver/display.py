"""Live per-stream figures in the terminal (rich), refreshed once a second."""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from ..common.names import visible


class LiveDisplay:
    """A table of streams under the log lines; logging goes through the same console so
    the two never garble each other."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self._live = Live(
            self._table([]), console=self.console, refresh_per_second=2, transient=True
        )

    def logging_handler(self) -> logging.Handler:
        return RichHandler(
            console=self.console,
            show_time=False,
            show_path=False,
            show_level=False,
            markup=False,
            highlighter=None,
        )

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._live.stop()

    def update(self, streams: list[dict[str, Any]]) -> None:
        self._live.update(self._table(streams))

    @staticmethod
    def _table(streams: list[dict[str, Any]]) -> Table:
        table = Table(title=None if streams else "waiting for senders…", expand=False)
        for column in (
            "stream",
            "codec",
            "time",
            "level dBFS",
            "buffer/target",
            "jitter",
            "latency",
            "drift",
            "glitches",
            "gaps",
        ):
            table.add_column(column, justify="left" if column == "stream" else "right")
        for s in streams:
            playing = "buffer_ms" in s
            # a name is text, never markup ("[/bold]x" or "USB mic [/dev/snd/…]" must not
            # break the table, or the receiver), and what hides itself or turns the text
            # around ("\u202egnp.exe" reads "exe.png") is shown escaped
            name = visible(s["stream"])
            table.add_row(
                Text(name)
                if s.get("state", "live") == "live"
                else Text(f"{name} ({s['state']})", style="dim"),
                s["codec"],
                f"{s['seconds']:.0f} s",
                f"{s['peak_dbfs']:.0f} / {s['rms_dbfs']:.0f}",
                f"{s['buffer_ms']:.0f}/{s['target_ms']:.0f} ms" if playing else "—",
                f"{s['jitter_ms']:.1f} ms" if playing else "—",
                f"{s['latency_ms']:.0f} ms" if playing else "—",
                f"{s['drift_ppm']:+.0f} ppm" if playing else "—",
                (
                    f"{s['underruns']} u / {s['late_packets']} late / {s['concealed_samples']} conc"
                    if playing
                    else "—"
                ),
                str(s["gaps"]),
            )
        return table
