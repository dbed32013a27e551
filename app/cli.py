"""The ``micwire`` command: ``receive``, ``send``, ``devices``, ``demo``.

A thin layer: it builds a config from the options (:mod:`micwire.app.options`), runs it
(:mod:`micwire.app.runtime`), and turns any :class:`MicwireError` into one line on stderr
and exit status 1 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..common.errors import MicwireError
from ..common.paths import state_home
from .options import build_parser
from .runtime import EXIT_ERROR, raise_open_files_limit, run_until_signal

if TYPE_CHECKING:
    from ..receiver.supervisor import Supervisor

log = logging.getLogger("micwire")


def cmd_receive(args: argparse.Namespace) -> int:
    from ..receiver import Receiver, ReceiverConfig

    raise_open_files_limit()

    if args.self_signed:
        if args.cert or args.key:
            raise MicwireError("--self-signed or --cert/--key, not both")
        from ..receiver.tls import self_signed

        args.cert, args.key, fingerprint = self_signed()
        log.info("TLS with a self-signed certificate (%s)", args.cert)
        log.info("its SHA-256 fingerprint: %s", fingerprint)
        log.info("browsers will warn: compare that fingerprint before you accept it")
    live = sys.stderr.isatty() if args.live is None else args.live
    display = None
    if live:
        from ..receiver.display import LiveDisplay

        display = LiveDisplay()
        root = logging.getLogger()
        root.handlers[:] = [display.logging_handler()]
    if args.workers > 1:
        if args.output_device is not None:
            raise MicwireError(
                "live playback needs one process: drop --workers, or --output-device"
            )
        if args.play:
            log.info("live playback is off with --workers (it records and serves the pages)")
        args.play = False
    config = ReceiverConfig(
        host=args.host,
        port=args.port,
        record_dir=args.record,
        formats=args.format,
        play=args.play,
        output_device=args.output_device,
        routes=tuple(args.route),
        latency_ms=args.latency_ms,
        stats_json=args.stats_json,
        token=args.token,
        certfile=args.cert,
        keyfile=args.key,
        max_streams=args.max_streams,
        max_listeners=args.max_listeners,
        gather_ms=args.gather_ms,
        on_stats=display.update if display else None,
        listen_token=args.listen_token,
        send_token=args.send_token,
        web=args.web,
        silence_dbfs=args.silence_db,
        silence_s=args.silence_s,
        down_s=args.down_s,
        webhook=args.webhook,
        state_dir=args.state if args.state is not None else state_home(),
    )
    server: Receiver | Supervisor
    if args.workers > 1:
        from ..receiver.supervisor import Supervisor

        server = Supervisor(config, args.workers)
    else:
        server = Receiver(config)
    if display is None:
        run_until_signal(server.run, device=args.play, receiver=True)
    else:
        with display:
            run_until_signal(server.run, device=args.play, receiver=True)
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from ..sender import Sender, SenderConfig

    config = SenderConfig(
        url=args.url,
        source=args.source,
        device=args.device,
        codec=args.codec,
        rate_hz=args.rate,
        channels=args.channels,
        frame_ms=args.frame_ms,
        gather_pcm=args.gather,
        bitrate=args.bitrate,
        application=args.application,
        duration_s=args.duration,
        fec=args.fec,
        expected_loss_pct=args.expected_loss,
        clock_scale=1 / (1 + args.clock_ppm * 1e-6),
        token=args.token,
        cafile=args.cafile,
        spool_s=args.spool_s,
        reconnect=args.reconnect,
        reconnect_timeout_s=args.reconnect_timeout,
        finish_timeout_s=args.finish_timeout,
        state_dir=args.state if args.state is not None else state_home(),
    )
    if args.name:
        config.name = args.name

    async def main(stop: asyncio.Event) -> None:
        sender = Sender(config)
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: sender.stop())
        try:
            report = await sender.run()
        finally:
            stopper.cancel()
        log.info("%s", report.summary())

    run_until_signal(main, device=args.source is None)
    return 0


def cmd_devices(_args: argparse.Namespace) -> int:
    from ..common.devices import describe_devices, sounddevice

    sd = sounddevice()
    print(describe_devices(list(sd.query_devices()), list(sd.query_hostapis())))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_until_signal(lambda stop: run_demo(args.dir, args.seconds, stop))  # type: ignore[no-any-return]


def _one_line(record: logging.LogRecord) -> bool:
    """Turn a record's traceback into its last line."""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


COMMANDS = {"receive": cmd_receive, "send": cmd_send, "devices": cmd_devices, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="micwire %(name)s: %(message)s" if args.debug else "micwire: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:
        # websockets logs failed handshakes (port scanners, bad clients) with tracebacks:
        # keep its errors, as one line each
        websockets_log = logging.getLogger("websockets")
        websockets_log.setLevel(logging.ERROR)
        websockets_log.addFilter(_one_line)
    try:
        return int(COMMANDS[args.command](args))
    except MicwireError as exc:
        if args.debug:
            raise
        print(f"micwire: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
