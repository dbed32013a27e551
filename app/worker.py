"""``python -m micwire.app.worker``: one worker of ``micwire receive --workers N``, started by
the supervisor (micwire/receiver/supervisor.py) with its configuration as JSON on
standard input. Its log lines and figures go to the supervisor, who shows them as one
receiver's."""

from __future__ import annotations

import json
import logging
import sys

from ..common.errors import MicwireError
from ..receiver import logs
from ..receiver.config import ReceiverConfig
from ..receiver.control import WorkerLink
from .runtime import EXIT_ERROR, run_until_signal


class ToSupervisor(logging.Handler):
    """Log records over the control line (stderr until it is up)."""

    def __init__(self) -> None:
        super().__init__()
        self.link: WorkerLink | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            link = self.link
            if link is not None and link.connected:
                link.tell(
                    "log",
                    level=record.levelno,
                    logger=record.name,
                    message=message,
                    # for the supervisor's repeat limiter: the kind of line, and whose
                    template=getattr(record, "template", None) or str(record.msg),
                    peer=logs.PEER.get(),
                    stream=logs.STREAM.get(),
                )
            else:
                print(f"micwire: {message}", file=sys.stderr)
        except Exception:
            self.handleError(record)


def main() -> int:
    debug = "--debug" in sys.argv[1:]
    handler = ToSupervisor()
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    try:
        from ..receiver import Receiver

        config = ReceiverConfig.from_json(json.loads(sys.stdin.read()))
        receiver = Receiver(config)
        link = receiver.worker
        handler.link = link
        if link is not None:
            receiver.config.on_stats = lambda lines: link.tell("stats", lines=lines)
        run_until_signal(receiver.run, device=False, receiver=True)  # workers never play
    except MicwireError as exc:
        if debug:
            raise
        print(f"micwire: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
