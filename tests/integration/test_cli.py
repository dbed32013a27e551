"""The `micwire` command as users and scripts meet it: one-line errors, exit codes, signals."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from rig import Micwire, read_single, receiver, seconds


def run(*args: str) -> Micwire:
    cli = Micwire(*args)
    cli.wait()
    return cli


def assert_one_line_error(cli: Micwire, *fragments: str) -> None:
    assert cli.proc.returncode == 1, cli.log
    assert len(cli.lines) == 1 and cli.lines[0].startswith("micwire: error: "), cli.log
    assert "Traceback" not in cli.log
    for fragment in fragments:
        assert fragment in cli.lines[0]


def test_unreachable_receiver_with_no_reconnect_fails_at_once() -> None:
    cli = run("send", "ws://127.0.0.1:9", "--source", "tone:440", "--no-reconnect")
    assert_one_line_error(
        cli,
        "cannot reach the receiver at ws://127.0.0.1:9 (Connection refused)",
        "is `micwire receive` running there?",
    )


def test_an_unreachable_receiver_is_waited_for_until_the_reconnect_timeout() -> None:
    """Started before its receiver, a sender captures and keeps trying (saying so once);
    --reconnect-timeout bounds that, and the error says what was not delivered."""
    cli = run("send", "ws://127.0.0.1:9", "--source", "tone:440", "--reconnect-timeout", "1.5")
    assert cli.proc.returncode == 1, cli.log
    assert cli.lines[0] == (
        "micwire: the receiver at ws://127.0.0.1:9 is not reachable yet (Connection refused); "
        "capturing and trying again; the spool keeps the last 120 s"
    )
    assert len(cli.lines) == 2 and "Traceback" not in cli.log, cli.log
    assert re.fullmatch(
        r"micwire: error: could not reach the receiver at ws://127\.0\.0\.1:9 within 1\.5 s "
        r"\(cannot reach .*\); 1\.\d s of audio were not delivered",
        cli.lines[1],
    ), cli.lines[1]


def test_a_bad_token_fails_at_once(tmp_path: Path) -> None:
    rx, port = receiver("--no-play", "--token", "s3cret")
    try:
        cli = Micwire("send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--token", "nope")
        cli.wait(timeout=20)
        assert_one_line_error(
            cli, "wants a valid token (HTTP 401)", "pass --token or set MICWIRE_TOKEN"
        )
    finally:
        rx.signal(signal.SIGTERM)
        assert rx.wait() == 0


def test_bad_url() -> None:
    assert_one_line_error(
        run("send", "http//nope", "--source", "tone:440"),
        "bad receiver URL 'http//nope'",
        "ws://HOST:PORT",
    )


def test_unknown_device_says_how_to_list_devices() -> None:
    cli = run("send", "ws://127.0.0.1:9", "--device", "USB Mic")
    assert_one_line_error(cli, "input device", "'USB Mic'", "`micwire devices` lists them")


#: ``python -m micwire`` on a machine without PortAudio: the library lookup sounddevice does
#: (ctypes.util.find_library) finds none, as it would with libportaudio2 not installed.
WITHOUT_PORTAUDIO = (
    "import ctypes.util, runpy, sys\n"
    "find = ctypes.util.find_library\n"
    "ctypes.util.find_library = lambda name: None if 'portaudio' in name else find(name)\n"
    "sys.argv[0] = 'micwire'\n"
    "runpy.run_module('micwire', run_name='__main__')\n"
)


@pytest.mark.parametrize(
    "args",
    [["devices"], ["send", "ws://127.0.0.1:9", "--device", "USB Mic"]],
    ids=["devices", "send"],
)
def test_without_portaudio_the_error_says_how_to_install_it(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PORTAUDIO, *args], capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "micwire: error: PortAudio library not found: install PortAudio (Debian/Ubuntu: "
        "`sudo apt-get install libportaudio2`, macOS: `brew install portaudio`)"
    ]


def test_out_of_range_option() -> None:
    assert_one_line_error(
        run("send", "ws://x:1", "--source", "tone:440", "--codec", "opus", "--rate", "44100"),
        "Opus cannot run at 44100 Hz",
    )
    assert_one_line_error(run("send", "ws://x:1", "--source", "bogus"), "use tone:HZ or file:PATH")
    assert_one_line_error(
        run("send", "ws://x:1", "--source", "file:/nonexistent.wav"), "cannot read audio file"
    )


def test_usage_errors_exit_2() -> None:
    cli = run("receive", "--format", "wma")
    assert cli.proc.returncode == 2 and "unknown format 'wma'" in cli.log


def test_debug_shows_the_traceback() -> None:
    cli = run("--debug", "send", "ws://127.0.0.1:9", "--source", "tone:440", "--no-reconnect")
    assert cli.proc.returncode != 0 and "Traceback" in cli.log


def test_receiver_refusal_reaches_the_sender(tmp_path: Path) -> None:
    rx, port = receiver("--no-play")
    try:
        cli = run(
            "send",
            f"ws://127.0.0.1:{port}",
            "--source",
            "tone:440",
            "--rate",
            "8000",
            "--frame-ms",
            "2.5",
            "--channels",
            "8",
            "--name",
            "x" * 300,
        )
        assert_one_line_error(cli, "the receiver refused the stream", "stream name must be")
    finally:
        rx.signal(signal.SIGTERM)
        assert rx.wait() == 0


def test_sigterm_on_the_receiver_closes_files_and_exits_0(tmp_path: Path) -> None:
    rx, port = receiver("--record", str(tmp_path), "--format", "wav,mp3,flac", "--no-play")
    tx = Micwire(
        "send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--name", "live", "--no-reconnect"
    )
    try:
        rx.wait_for("stream 'live' from")
        time.sleep(seconds(1.5))
        rx.signal(signal.SIGTERM)
        assert rx.wait() == 0
        assert tx.wait() == 1
        assert "receiver closed the connection" in tx.log
    finally:
        tx.kill()
        rx.kill()
    for ext in ("wav", "mp3", "flac"):
        data, rate, _ = read_single(tmp_path, f"live-*.{ext}")
        assert rate == 48000 and len(data) > 48000, ext


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_on_the_sender_finishes_the_stream_and_exits_0(tmp_path: Path, sig: int) -> None:
    rx, port = receiver("--record", str(tmp_path), "--no-play")
    tx = Micwire(
        "send",
        f"ws://127.0.0.1:{port}",
        "--source",
        "tone:440",
        "--name",
        "stopped",
        "--codec",
        "opus",
    )
    try:
        rx.wait_for("stream 'stopped' from")
        time.sleep(seconds(1.0))
        tx.signal(sig)
        assert tx.wait() == 0, tx.log
        summary = tx.wait_for(
            r"sent \d+ packets, [\d.]+ s of audio \((\d+) samples\), nothing lost"
        )
        rx.wait_for("stream 'stopped' .*: complete")
    finally:
        rx.signal(signal.SIGINT)
        rx.wait()
    info = sf.info(str(next(tmp_path.glob("stopped-*.wav"))))
    assert info.frames == int(summary.group(1))  # every captured sample, not one more


def test_demo_runs_without_a_sound_card(tmp_path: Path) -> None:
    cli = Micwire("demo", "--dir", str(tmp_path), "--seconds", "1")
    assert cli.wait(60) == 0, cli.log
    assert "nothing lost" in cli.stdout
    for name in ("demo-pcm", "demo-opus"):
        for ext in ("wav", "mp3"):
            data, rate, _ = read_single(tmp_path, f"{name}-*.{ext}")
            assert rate == 48000 and abs(len(data) - 48000) <= (0 if ext == "wav" else 1152)


def test_receiver_startup_errors_are_one_line(tmp_path: Path) -> None:
    assert_one_line_error(
        run("receive", "--output-device", "no such speaker"),
        "output device",
        "`micwire devices` lists them",
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(
        run("receive", "--record", str(blocker / "sub"), "--no-play"),
        f"cannot record to {blocker / 'sub'}",
    )


def test_a_stop_is_bounded_when_the_receiver_stops_reading(tmp_path: Path) -> None:
    """A receiver that hangs (SIGSTOP): Ctrl-C on the sender waits for the receiver's
    confirmation at most --finish-timeout, then says what may be missing and exits 1."""
    rx, port = receiver("--record", str(tmp_path), "--no-play")
    tx = Micwire("send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--finish-timeout", "2")
    try:
        tx.wait_for("sending")
        time.sleep(seconds(1))
        rx.signal(signal.SIGSTOP)
        time.sleep(seconds(0.5))
        stopped_at = time.monotonic()
        tx.signal(signal.SIGTERM)
        assert tx.wait(seconds(10)) == 1
        assert time.monotonic() - stopped_at < 2 + seconds(2)
        assert "did not confirm the stream within 2 s" in tx.log
        assert "may not have been delivered" in tx.lines[-1]
    finally:
        rx.signal(signal.SIGCONT)
        rx.signal(signal.SIGTERM)
        rx.wait()
        tx.kill()


def test_a_duration_sender_whose_receiver_is_gone_gives_up_and_says_so(tmp_path: Path) -> None:
    rx, port = receiver("--record", str(tmp_path), "--no-play")
    tx = Micwire(
        "send",
        f"ws://127.0.0.1:{port}",
        "--source",
        "tone:440",
        "--duration",
        "2",
        "--finish-timeout",
        "1",
    )
    try:
        tx.wait_for("sending")
        rx.proc.kill()  # gone for good
        assert tx.wait(seconds(10)) == 1
        assert "did not confirm the stream within 1 s" in tx.lines[-1]
    finally:
        rx.kill()
        tx.kill()


def test_bad_environment_values_get_the_flags_errors() -> None:
    for env, fragment in (
        ({"MICWIRE_PORT": "eighty"}, "expected a port number, got 'eighty'"),
        ({"MICWIRE_PORT": "70000"}, "port must be 0..65535"),
        ({"MICWIRE_FORMAT": "wma"}, "unknown format 'wma'"),
        ({"MICWIRE_WORKERS": "100000"}, "must be at most 64, got 100000"),
        ({"MICWIRE_GATHER_MS": "-1"}, "must be 0..200 ms, got -1"),
    ):
        cli = Micwire("receive", "--no-play", env=env)
        assert cli.wait() == 2, cli.log
        assert "Traceback" not in cli.log and fragment in cli.log


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    rx, port = receiver("--no-play")
    try:
        cli = run("receive", "--host", "127.0.0.1", "--port", str(port), "--no-play")
        assert_one_line_error(cli, f"cannot listen on 127.0.0.1:{port}", "pick another --port")
    finally:
        rx.signal(signal.SIGTERM)
        rx.wait()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_an_ipv6_receiver_gives_urls_a_sender_can_use(tmp_path: Path) -> None:
    """The address in brackets (ws://[::1]:PORT), as a URL needs it, and it works."""
    # brackets or none, as the user likes
    rx = Micwire(
        "receive", "--host", "[::1]", "--port", "0", "--no-play", "--record", str(tmp_path)
    )
    try:
        port = int(rx.wait_for(r"listening on ws://\[::1\]:(\d+)$").group(1))
        rx.wait_for(rf"monitor page: http://\[::1\]:{port}/$")
        tx = run("send", f"ws://[::1]:{port}", "--source", "tone:440", "--duration", "0.5")
        assert tx.proc.returncode == 0 and "nothing lost" in tx.lines[-1], tx.log
        rx.wait_for(r"stream '[^']+' from \[::1\]:\d+: pcm")  # the sender's address too
        again = run("receive", "--host", "::1", "--port", str(port), "--no-play")
        assert_one_line_error(again, f"cannot listen on [::1]:{port}: the port is in use")
    finally:
        rx.signal(signal.SIGTERM)
        rx.wait()
    for workers in ("1", "2"):  # one line, the address once, in the system's words
        cli = run("receive", "--host", "2001:db8::1", "--workers", workers, "--no-play")
        assert_one_line_error(
            cli, "cannot listen on [2001:db8::1]:8765: Cannot assign requested address"
        )
        assert cli.lines[0].count("2001:db8::1") == 1
        lookup = run("receive", "--host", "nosuchhost.invalid", "--workers", workers, "--no-play")
        # the resolver's words (which depend on the machine's DNS), not "Unknown error -2"
        assert_one_line_error(lookup, "cannot listen on nosuchhost.invalid:8765: ")
        assert "Unknown error" not in lookup.lines[0]


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["plain", "workers"])
def test_a_receiver_on_every_interface_says_where_another_machine_reaches_it(
    workers: list[str],
) -> None:
    """Not just ws://0.0.0.0 (which reaches nothing from elsewhere): this machine's own
    address, and a sender given that URL gets through."""
    rx = Micwire("receive", "--port", "0", "--no-play", *workers)
    try:
        line = rx.wait_for(
            r"listening on ws://0\.0\.0\.0:(\d+) \((?:2 workers; )?every interface; "
            r"from another machine: "
            r"(ws://(\S+):(\d+))\)"
        )
        port, url, there = line.group(1), line.group(2), line.group(3)
        assert line.group(4) == port and there not in ("0.0.0.0", "localhost", "127.0.0.1")
        rx.wait_for(
            rf"monitor page: http://localhost:{port}/ \(from another machine: "
            rf"http://{re.escape(there)}:{port}/\)$"
        )
        # open to anyone on the network, and said so once, with the two ways out
        rx.wait_for(
            rf"no --token and every interface: anyone who can reach port {port} here can "
            r"listen, download the recordings and send; add --token SECRET, or --host "
            r"127\.0\.0\.1 to keep it to this machine"
        )
        tx = run("send", url, "--source", "tone:440", "--duration", "0.5")
        assert tx.proc.returncode == 0 and "nothing lost" in tx.lines[-1], tx.log
    finally:
        rx.signal(signal.SIGTERM)
        rx.wait()


@pytest.mark.parametrize("closed", [["--host", "127.0.0.1"], ["--token", "t"]])
def test_a_receiver_with_a_token_or_kept_local_warns_of_nothing(closed: list[str]) -> None:
    rx = Micwire("receive", "--port", "0", "--no-play", *closed)
    try:
        rx.wait_for(r"monitor page: ")
    finally:
        rx.signal(signal.SIGTERM)
        assert rx.wait() == 0
    assert not [line for line in rx.lines if "--token SECRET" in line], rx.log


def test_stats_json_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    cli = run("receive", "--no-play", "--stats-json", str(tmp_path / "no" / "s.jsonl"))
    assert_one_line_error(cli, "cannot write --stats-json", "No such file or directory")


def test_version_is_defined_once() -> None:
    import importlib.metadata

    cli = Micwire("--version")
    assert cli.wait() == 0
    assert cli.stdout.strip() == f"micwire {importlib.metadata.version('micwire')}"


def test_token_mistakes_are_said_at_start() -> None:
    for args, env, fragment in (
        (("receive", "--no-play"), {"MICWIRE_TOKEN": ""}, "--token is empty"),
        (("receive", "--no-play", "--token", "abc "), {}, "printable text without spaces"),
        (("send", "ws://127.0.0.1:9", "--source", "tone:440", "--token", "a\nb"), {}, "--token"),
    ):
        cli = Micwire(*args, env=env)
        cli.wait()
        assert_one_line_error(cli, fragment)


def test_the_sender_and_the_receiver_say_the_same_about_a_token() -> None:
    """One rule (common/tokens.py), one wording, whichever command meets the token."""
    for command in (["receive", "--no-play"], ["send", "ws://127.0.0.1:9", "--source", "tone:440"]):
        for env, says in (
            ({"MICWIRE_TOKEN": ""}, "--token is empty; give a secret, or leave it out"),
            ({"MICWIRE_TOKEN": "abc def"}, "--token must be printable text without spaces"),
        ):
            cli = Micwire(*command, env=env)
            cli.wait()
            assert_one_line_error(cli, says)


def test_ctrl_c_is_quick_even_with_peers_that_do_not_answer(tmp_path: Path) -> None:
    """Idle TCP connections and a frozen sender do not hold up the receiver's exit."""
    import socket

    rx, port = receiver("--record", str(tmp_path), "--no-play")
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    tx = Micwire("send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--name", "frozen")
    try:
        rx.wait_for("stream 'frozen' from")
        time.sleep(seconds(1))
        tx.signal(signal.SIGSTOP)
        started = time.monotonic()
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(15)) == 0
        assert time.monotonic() - started < seconds(6)
    finally:
        tx.signal(signal.SIGCONT)
        tx.kill()
        rx.kill()
        for s in idle:
            s.close()
    sidecar = json.loads(next(tmp_path.glob("frozen-*.json")).read_text())
    assert sidecar["outcome"] == "interrupted (the receiver stopped)", sidecar
