"""Soak: many streams into one receiver for minutes; nothing lost, nothing leaked.

- ``--streams`` paced streams from bench/loadgen.py (half PCM, half Opus, 20 ms), and
- ``--impaired`` real ``micwire send`` senders (PCM tone) through the impairment proxy of
  tests/integration/proxy.py (20 ms delay + 30 ms jitter, and a cut of every connection
  every ``--cut-every`` seconds: they reconnect and resume from their spools),

all into one ``micwire receive --no-play --record DIR``, for ``--minutes``. Every 10 s the
receiver's RSS and open file descriptors are sampled. At the end: the samples recorded
against the samples sent (for every stream: the loadgen streams' ``done`` confirmations,
the senders' "nothing lost" and their sidecars), RSS growth after the first minute, and
file descriptors at the end against before the load.

    .venv/bin/python bench/soak.py [--streams 200] [--impaired 10] [--minutes 10]

Prints figures; exits 1 if a sample was lost or descriptors leaked. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from capacity import children, cpu_seconds, free_port, receive_command, wait_port  # noqa: E402
from proxy import ProxyThread  # noqa: E402

RATE = 48000


def tree(pid: int) -> list[int]:
    """A process and its children (the workers of ``--workers N``)."""
    return [pid, *children(pid)]


def rss_mb(pid: int) -> float:
    total = 0.0
    for member in tree(pid):
        with open(f"/proc/{member}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def write_backlog(port: int) -> tuple[float, float]:
    """(sum, max) over streams of the audio received and not yet written to disk, from
    /metrics: memory that grows with it is a disk falling behind, not a leak."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return float("nan"), float("nan")
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("micwire_recording_backlog_seconds{")
    ]
    return sum(values), max(values, default=0.0)


def open_fds(pid: int) -> int:
    return sum(len(os.listdir(f"/proc/{member}/fd")) for member in tree(pid))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200, help="paced loadgen streams")
    parser.add_argument("--impaired", type=int, default=10, help="senders through the proxy")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cut-every", type=float, default=60.0, help="s between proxy cuts")
    parser.add_argument("--format", default="wav")
    parser.add_argument("--workers", type=int, default=1, help="the receiver's --workers")
    args = parser.parse_args()
    seconds = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="micwire-soak-"))
    port = free_port()
    micwire = str(Path(sys.executable).with_name("micwire"))
    receiver = subprocess.Popen(
        receive_command(
            port,
            work / "rec",
            "--format",
            args.format,
            "--max-streams",
            str(args.streams + args.impaired + 16),
            "--workers",
            str(args.workers),
        ),
        stderr=(work / "receiver.log").open("wb"),
    )
    loads: list[tuple[int, subprocess.Popen[str]]] = []
    senders: list[subprocess.Popen[bytes]] = []
    proxy: ProxyThread | None = None
    stop = threading.Event()
    try:
        wait_port(port)
        log_path = work / "receiver.log"
        deadline = time.monotonic() + 30  # every worker up (the port answers at the first)
        while "listening on" not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or receiver.poll() is not None:
                raise RuntimeError(f"the receiver did not start: see {log_path}")
            time.sleep(0.1)
        fds_before = open_fds(receiver.pid)
        proxy = ProxyThread(port, delay_s=0.02, jitter_s=0.03)
        half = args.streams // 2
        for codec, n in (("pcm", half), ("opus", args.streams - half)):
            if n:
                loads.append(
                    (
                        n,
                        subprocess.Popen(
                            [
                                sys.executable,
                                str(HERE / "loadgen.py"),
                                f"ws://127.0.0.1:{port}",
                                "--streams",
                                str(n),
                                "--seconds",
                                str(seconds),
                                "--codec",
                                codec,
                                "--name",
                                f"soak-{codec}",
                            ],
                            stdout=subprocess.PIPE,
                            text=True,
                        ),
                    )
                )
        senders = [
            subprocess.Popen(
                [
                    micwire,
                    "send",
                    proxy.url,
                    "--name",
                    f"impaired-{k}",
                    "--source",
                    "tone:440",
                    "--codec",
                    "pcm",
                    "--duration",
                    str(seconds),
                    "--finish-timeout",
                    "60",
                ],
                stderr=(work / f"impaired-{k}.log").open("wb"),
            )
            for k in range(args.impaired)
        ]

        def cutter() -> None:
            while not stop.wait(args.cut_every):
                proxy.cut()

        threading.Thread(target=cutter, daemon=True).start()
        samples: list[tuple[float, float, int]] = []
        start = time.monotonic()
        c0 = cpu_seconds(receiver.pid)
        print(f"# {args.streams} loadgen streams + {args.impaired} impaired senders, {seconds:g} s")
        while any(p.poll() is None for p in [*(load for _, load in loads), *senders]):
            time.sleep(10)
            if receiver.poll() is not None:
                print("receiver exited!")
                break
            t = time.monotonic() - start
            samples.append((t, rss_mb(receiver.pid), open_fds(receiver.pid)))
            backlog, worst = write_backlog(port)
            print(
                f"  {t:6.0f} s  RSS {samples[-1][1]:7.1f} MB  fds {samples[-1][2]:5d}  "
                f"not yet on disk {backlog:6.1f} s (worst stream {worst:.2f} s)",
                flush=True,
            )
        cpu = 100 * (cpu_seconds(receiver.pid) - c0) / (time.monotonic() - start)
        stop.set()
        confirmed, expected, unconfirmed = 0, 0, 0
        for n, load in loads:
            out, _ = load.communicate(timeout=120)
            stats = json.loads(out)
            confirmed += stats["confirmed_samples"]
            expected += n * stats["samples_each"]
            unconfirmed += n - stats["done"]
        codes = [s.wait(120) for s in senders]
        time.sleep(2)
        fds_after = open_fds(receiver.pid)
        receiver.send_signal(signal.SIGINT)
        receiver.wait(60)

    finally:  # a failure half-way leaves nothing running
        stop.set()
        for process in [*(load for _, load in loads), *senders, receiver]:
            if process.poll() is None:
                process.kill()
                process.wait()
        if proxy is not None:
            proxy.close()
            proxy.loop.close()

    impaired_ok = 0
    for k in range(args.impaired):
        log = (work / f"impaired-{k}.log").read_text(errors="replace")
        if codes[k] == 0 and "nothing lost" in log:
            impaired_ok += 1
    sidecars = [json.loads(p.read_text()) for p in (work / "rec").glob("*.json")]
    gaps = sum(len(s["gaps"]) for s in sidecars)
    recorded = sum(s["samples"] for s in sidecars)
    # after the first minute and while the load runs (not while the streams are finalised)
    warm = [r for t, r, _ in samples if 60 <= t <= seconds] or [r for _, r, _ in samples]
    growth = 100 * (max(warm) - warm[0]) / warm[0] if warm else 0.0
    print(f"receiver CPU: {cpu:.1f} % of a core ({cpu / max(1, len(sidecars)):.2f} % per stream)")
    print(
        f"RSS after the first minute: {warm[0]:.1f} MB -> max {max(warm):.1f} MB ({growth:+.1f} %)"
    )
    print(f"file descriptors: {fds_before} before the load, {fds_after} after it")
    print(
        f"loadgen streams: {confirmed / RATE:.1f} s confirmed of {expected / RATE:.1f} s "
        f"sent (Opus: less each stream's 312-sample pre-skip, which loadgen never flushes); "
        f"{unconfirmed} streams without a 'done'"
    )
    print(f"impaired senders: {impaired_ok} of {args.impaired} exited 'nothing lost'")
    print(f"recordings: {len(sidecars)} streams, {recorded / RATE:.1f} s, {gaps} gaps")
    # the Opus streams' last 312 samples (the pre-skip) are never confirmed: loadgen does not
    # flush its encoder; anything beyond that is audio lost
    short = expected - confirmed - (args.streams - half) * 312
    print(f"loadgen samples neither confirmed nor pre-skip: {short}")
    lost = (
        impaired_ok < args.impaired
        or gaps
        or unconfirmed
        or short > 0
        or fds_after > fds_before + 2
    )
    if lost:
        print(f"problems: files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
