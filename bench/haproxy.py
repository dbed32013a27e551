"""Several receivers behind a real HAProxy, one of them killed and restarted mid-stream.

docs/deploy/haproxy.cfg (its server ports rewritten) in front of ``--receivers`` micwire
receivers on this machine, each recording to its own directory. ``--senders`` CLI senders
(PCM tone, a known signal) connect to ``ws://127.0.0.1:PORT/stream/NAME``; HAProxy hashes
the path, so each stream has one receiver. Mid-stream one receiver is killed with SIGKILL
and started again ``--down-s`` later on the same port and directory: its senders lose the
connection, retry (HAProxy answers 503 while nothing listens), resume there from their
spools, and the receiver's repaired recording continues in a second part. A longer outage
(``--down-s 30``: HAProxy takes the receiver out after ~20 s of failed checks) moves its
streams to the other receivers: each continues there from what its sender's spool still
holds, in a new file in that receiver's directory; the dead receiver's part (repaired at
its restart) may hold a little more than was acknowledged, so parts may overlap, and the
overlap must be the same samples.

At the end every stream is checked: parts in every receiver's directory, joined, must be
the tone sample for sample, exactly as long as what was sent, with no gap; every sender
must have exited 0 ("nothing lost"). Prints a line per finding and a summary; exits 1 if a
stream is incomplete.

    .venv/bin/python bench/haproxy.py [--senders 30] [--receivers 3] [--seconds 20]

Needs the Debian package haproxy (``make bench-haproxy`` installs it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "docs" / "deploy" / "haproxy.cfg"
RATE = 48000
sys.path.insert(0, str(HERE))
from capacity import free_port, receive_command, wait_port  # noqa: E402


def tone(n: int, hz: float = 440.0) -> np.ndarray:
    """What ``--source tone:HZ`` sends, sample for sample (-12 dBFS sine)."""
    t = np.arange(n) / RATE
    return np.rint(np.sin(2 * np.pi * hz * t) * 0.25 * 32767).astype(np.int16)


def start_receiver(port: int, directory: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        receive_command(port, directory),
        stderr=log.open("ab"),
    )


def live_streams(ports: list[int]) -> int:
    """Streams live on the receivers, from their /healthz."""
    total = 0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                total += json.load(r)["live"]
        except OSError:
            pass
    return total


def haproxy_config(front: int, ports: list[int]) -> str:
    """The documented configuration, listening on ``front``, with our receivers."""
    text = CONFIG.read_text()
    text = re.sub(r"^\s*server rx\d .*\n", "", text, flags=re.M)
    text = text.replace("bind :8765", f"bind 127.0.0.1:{front}")
    text = text.replace("log stdout format raw local0 info", "log stdout format raw local0 err")
    servers = "".join(f"    server rx{k + 1} 127.0.0.1:{p} check\n" for k, p in enumerate(ports))
    return text.rstrip("\n") + "\n" + servers


def joined_stream(directories: list[Path], name: str) -> tuple[np.ndarray | None, list[str]]:
    """Every part of stream ``name`` found in any directory, in timeline order, joined."""
    parts: list[tuple[int, np.ndarray, dict[str, object]]] = []
    for directory in directories:
        for sidecar in directory.glob("*.json"):
            data = json.loads(sidecar.read_text())
            if data.get("stream") != name:
                continue
            for part in data["parts"]:
                audio = [
                    soundfile.read(str(directory / f), dtype="int16", always_2d=True)[0][:, 0]
                    for f in part["files"]
                    if f.endswith(".wav")
                ]
                parts.append((int(part["origin"]), np.concatenate(audio), part))
    parts.sort(key=lambda p: p[0])
    notes: list[str] = []
    if not parts:
        return None, ["no recording"]
    joined: list[np.ndarray] = []
    end = parts[0][0]
    for origin, audio, part in parts:
        if origin < end:
            # a stream that moved to another receiver (its own was gone too long): the new
            # one starts where the sender's acknowledgements stopped, and the dead one may
            # have recorded a little past that. Both hold the same samples there
            overlap = min(end - origin, len(audio))
            at = origin - parts[0][0]
            if not np.array_equal(np.concatenate(joined)[at : at + overlap], audio[:overlap]):
                notes.append(f"part at {origin} overlaps {overlap} samples that differ")
            audio, origin = audio[overlap:], origin + overlap
        if origin != end:
            notes.append(f"part at {origin} does not continue at {end}")
        if part.get("gaps"):
            notes.append(f"gaps {part['gaps']}")
        joined.append(audio)
        end = origin + len(audio)
    return np.concatenate(joined), notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=30)
    parser.add_argument("--receivers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="each sender's duration")
    parser.add_argument("--kill-at", type=float, default=5.0, help="s after every stream is live")
    parser.add_argument(
        "--down-s",
        type=float,
        default=3.0,
        help="how long it stays down (beyond HAProxy's fall 10 x 2 s, ~20 s, its streams "
        "move to the other receivers)",
    )
    args = parser.parse_args()
    if shutil.which("haproxy") is None:
        print("haproxy is missing (Debian: apt install haproxy; make bench-haproxy)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="micwire-haproxy-"))
    ports = [free_port() for _ in range(args.receivers)]
    front = free_port()
    dirs = [work / f"rx{k + 1}" for k in range(args.receivers)]
    logs = [work / f"rx{k + 1}.log" for k in range(args.receivers)]
    receivers = [start_receiver(p, d, log) for p, d, log in zip(ports, dirs, logs, strict=True)]
    (work / "haproxy.cfg").write_text(haproxy_config(front, ports))
    proxy = subprocess.Popen(
        ["haproxy", "-f", str(work / "haproxy.cfg")],
        stdout=(work / "haproxy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    senders: list[subprocess.Popen[bytes]] = []
    failures = 0
    try:
        for p in [*ports, front]:
            wait_port(p)
        time.sleep(2.5)  # HAProxy's first health checks
        micwire = str(Path(sys.executable).with_name("micwire"))
        for k in range(args.senders):
            name = f"room-{k:02d}"
            senders.append(
                subprocess.Popen(
                    [
                        micwire,
                        "send",
                        f"ws://127.0.0.1:{front}/stream/{name}",
                        "--name",
                        name,
                        "--source",
                        "tone:440",
                        "--codec",
                        "pcm",
                        "--duration",
                        str(args.seconds),
                        "--finish-timeout",
                        str(round(args.down_s + 60)),
                    ],
                    stderr=(work / f"{name}.log").open("wb"),
                )
            )
        started = time.monotonic()
        while live_streams(ports) < args.senders:  # every sender is streaming
            if time.monotonic() - started > 60:
                raise RuntimeError(f"only {live_streams(ports)} streams live after 60 s")
            time.sleep(0.2)
        print(f"{args.senders} streams live at {time.monotonic() - started:.1f} s")
        time.sleep(args.kill_at)
        victim = args.receivers // 2
        receivers[victim].send_signal(signal.SIGKILL)
        receivers[victim].wait()
        print(f"killed receiver rx{victim + 1} at {time.monotonic() - started:.1f} s (SIGKILL)")
        time.sleep(args.down_s)
        receivers[victim] = start_receiver(ports[victim], dirs[victim], logs[victim])
        print(f"restarted rx{victim + 1} at {time.monotonic() - started:.1f} s")
        codes = [s.wait(args.seconds + 120) for s in senders]
        print(f"senders done at {time.monotonic() - started:.1f} s; exit codes {Counter(codes)}")
        failures += sum(1 for c in codes if c != 0)
    finally:
        for s in senders:
            if s.poll() is None:
                s.kill()
        for r in receivers:
            r.send_signal(signal.SIGINT)
        for r in receivers:
            try:
                r.wait(30)
            except subprocess.TimeoutExpired:
                r.kill()
        proxy.terminate()
        proxy.wait(10)

    expected = tone(round(args.seconds * RATE))
    per_receiver: Counter[str] = Counter()
    resumed = moved = 0
    for k in range(args.senders):
        name = f"room-{k:02d}"
        audio, notes = joined_stream(dirs, name)
        holders = [d.name for d in dirs if any(d.glob(f"{name}*.json"))]
        per_receiver.update(holders)
        moved += len(holders) > 1
        log_text = (work / f"{name}.log").read_text(errors="replace")
        if re.search(r"\b[1-9]\d* reconnects?\b", log_text):
            resumed += 1
        exact = audio is not None and np.array_equal(audio, expected)
        if not exact or notes:
            failures += 1
            length = 0 if audio is None else len(audio)
            print(f"  {name}: {length} of {len(expected)} samples, exact={exact} {notes}")
    print(
        f"{args.senders} streams over {args.receivers} receivers "
        f"({dict(sorted(per_receiver.items()))}), {resumed} resumed after the kill, "
        f"{moved} of them on another receiver: "
        f"{args.senders - failures if failures <= args.senders else 0} complete and "
        "sample-exact"
        if failures == 0
        else f"{failures} problem(s); logs kept in {work}"
    )
    if failures == 0:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
