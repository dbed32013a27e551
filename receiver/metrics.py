"""``/metrics``: Prometheus text exposition, read from the streams at scrape time.

Counters only go up (a stream's totals over all its connections); gauges are read from
the object that owns the figure when Prometheus asks, and reading takes nothing from
anyone (the level meters are windows, not accumulators). Names carry their unit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from .server import Receiver

S = ["stream"]


class ReceiverCollector(Collector):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def collect(self) -> Iterator[Metric]:
        rx = self.receiver
        streams = rx.streams.shown()
        live = GaugeMetricFamily("micwire_streams", "Streams by state", labels=["state"])
        live.add_metric(["live"], len(rx.streams.live))
        live.add_metric(["reconnecting"], len(rx.streams.parked))
        yield live
        yield GaugeMetricFamily(
            "micwire_parked_streams",
            "Streams waiting for their sender to come back",
            value=len(rx.streams.parked),
        )
        refused = CounterMetricFamily(
            "micwire_connections_refused", "Connections refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(rx.monitor.refusals.items()):
            refused.add_metric([reason], count)
        yield refused
        empty = CounterMetricFamily(
            "micwire_connections_without_audio",
            "Sender connections that ended before any audio (not listed as streams), by kind",
            labels=["kind"],
        )
        for kind, count in sorted(rx.monitor.empty_connections.items()):
            empty.add_metric([kind], count)
        yield empty
        yield CounterMetricFamily(
            "micwire_received_bytes",
            "Bytes of audio received from senders",
            value=rx.monitor.received_bytes,
        )
        yield CounterMetricFamily(
            "micwire_sent_bytes",
            "Bytes sent to listeners",
            value=rx.monitor.listener_bytes + sum(s.listeners.sent_bytes for s in rx.streams.all()),
        )
        counters = {
            "packets": ("micwire_packets", "Audio packets received"),
            "samples": ("micwire_recorded_samples", "Samples on the stream's timeline"),
            "gap_samples": ("micwire_gap_samples", "Samples of silence standing in for gaps"),
            "duplicate_packets": ("micwire_duplicate_packets", "Packets already recorded"),
        }
        families = {k: CounterMetricFamily(n, h, labels=S) for k, (n, h) in counters.items()}
        playback_counters = {
            "underruns": ("micwire_underruns", "Live playback ran dry"),
            "late_packets": ("micwire_late_packets", "Packets too late for live playback"),
            "lost_samples": ("micwire_lost_samples", "Samples skipped at a gap in playback"),
            "concealed_samples": ("micwire_concealed_samples", "Samples played as concealment"),
        }
        pfamilies = {
            k: CounterMetricFamily(n, h, labels=S) for k, (n, h) in playback_counters.items()
        }
        gauges = {
            "jitter_ms": ("micwire_jitter_seconds", "Arrival jitter the buffer covers", 1e-3),
            "latency_ms": ("micwire_latency_seconds", "Capture to playback estimate", 1e-3),
            "buffer_ms": ("micwire_buffer_seconds", "Live playback buffer depth", 1e-3),
            "target_ms": ("micwire_buffer_target_seconds", "Live playback buffer target", 1e-3),
            "drift_ppm": ("micwire_drift_ppm", "Sender clock against the sound card", 1.0),
            "write_backlog_s": (
                "micwire_recording_backlog_seconds",
                "Audio received and not yet written to disk",
                1.0,
            ),
        }
        gfamilies = {k: GaugeMetricFamily(n, h, labels=S) for k, (n, h, _) in gauges.items()}
        peak = GaugeMetricFamily("micwire_peak_dbfs", "Peak level, last second", labels=S)
        rms = GaugeMetricFamily("micwire_rms_dbfs", "RMS level, last second", labels=S)
        listeners = GaugeMetricFamily("micwire_listeners", "Browser listeners", labels=S)
        dropped = CounterMetricFamily(
            "micwire_listener_dropped_packets", "Packets a slow listener missed", labels=S
        )
        up = GaugeMetricFamily(
            "micwire_stream_up", "1 while the stream's sender is connected", labels=S
        )
        alert = GaugeMetricFamily(
            "micwire_alert", "1 while an alert is raised", labels=[*S, "alert"]
        )
        for stream in streams:
            figures = stream.figures()
            stats = vars(stream.stats())
            name = [stream.name]
            line = figures.line()
            for key, family in families.items():
                family.add_metric(name, stats[key])
            for key, pfamily in pfamilies.items():
                if key in line:
                    pfamily.add_metric(name, line[key])
            for key, gfamily in gfamilies.items():
                if line.get(key) is not None:
                    gfamily.add_metric(name, line[key] * gauges[key][2])
            peak.add_metric(name, figures.peak_dbfs)
            rms.add_metric(name, figures.rms_dbfs)
            listeners.add_metric(name, len(stream.listeners))
            dropped.add_metric(name, stream.listeners.dropped_gone)
            up.add_metric(name, 1 if stream.state == "live" else 0)
            for kind in ("silence", "clipping", "down"):
                alert.add_metric([*name, kind], 1 if kind in stream.meters.alerts.active else 0)
        yield from families.values()
        yield from pfamilies.values()
        yield from gfamilies.values()
        yield from (peak, rms, listeners, dropped, up, alert)


def registry_for(receiver: Receiver) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReceiverCollector(receiver))
    return registry
