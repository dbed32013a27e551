"""One output device's mix (pure): streams in, one block of device audio out.

Sans-I/O like the rest of ``common/``: no device, no event loop, no clock. A shell feeds
each input float32 blocks already at the device's rate (its resampler did the rate
conversion and the drift correction: :mod:`micwire.common.resample`) and asks for
``frames`` of the mix at a time; the same core can feed a file or a WebSocket instead of a
sound card.

- :class:`MixSettings`: one stream's gain, mute, solo and pan, checked as a PATCH body is
  (:meth:`MixSettings.patched`: a :class:`~micwire.common.errors.MixSettingError` names the
  field and what it allows); :class:`MasterSettings`: a device's master gain.
- :class:`Mixer`: the sum, in float32. Per input a gain matrix (input channels x device
  channels: gain, pan and the up/down-mix rule of :func:`channel_matrix`, mute and solo),
  ramped linearly over ``ramp_ms`` whenever it changes, so that no change clicks. Solo is a
  DAW's: when any input of this mix is soloed, only soloed inputs are heard (a soloed
  stream that is not connected silences nobody). Then the master gain (ramped too), then
  the :class:`Limiter`.
- :class:`MixBoard`: the settings by stream name and the masters by device name, to and
  from a JSON dict, so that they outlive a stream's reconnects and a restart (the shell
  keeps the file).

An input alone at 0 dB, centred, on a device with its channel count, under full scale,
comes out bit for bit as it went in: no multiplication happens on that path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from .errors import MixSettingError

Block = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float64]
_Settings = TypeVar("_Settings")

GAIN_DB_MIN = -60.0
GAIN_DB_MAX = 12.0
PAN_MIN = -1.0
PAN_MAX = 1.0
#: A gain change is spread over this long (linear ramp): short enough to be heard at once,
#: long enough not to click.
RAMP_MS = 5.0
#: The limiter's release time constant: slow enough not to pump or distort a voice (a
#: 100 Hz cycle is 10 ms), quick enough to give the level back between words.
RELEASE_MS = 80.0
#: What an input may hold that the mix has not taken yet; beyond, the oldest is dropped.
MAX_BUFFERED_S = 0.5
#: Reduction depths below this (about -0.0001 dB) count as none: the release ends there.
_REDUCTION_FLOOR = 1e-5
#: The limiter's release recursion runs in pieces this long (keeps its exponent small).
_LIMITER_PIECE = 1024


def _number(obj: Mapping[str, Any], name: str, low: float, high: float, unit: str) -> float:
    value = obj[name]
    allowed = f"{name} must be a number from {low:g} to {high:+g}{unit}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MixSettingError(f"{allowed}, not {value!r}", name)
    if not math.isfinite(value) or not low <= value <= high:
        raise MixSettingError(f"{allowed}: {value!r} is out of range", name)
    return float(value)


def _flag(obj: Mapping[str, Any], name: str) -> bool:
    value = obj[name]
    if not isinstance(value, bool):
        raise MixSettingError(f"{name} must be true or false, not {value!r}", name)
    return value


def _check_body(body: object, known: tuple[str, ...], what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping) or not all(isinstance(key, str) for key in body):
        raise MixSettingError(
            f"{what} must be a JSON object with any of the fields {', '.join(known)}"
        )
    for key in body:
        if key not in known:
            raise MixSettingError(
                f"unknown field {key!r} in {what}: the fields are {', '.join(known)}", key
            )
    return body


@dataclass(frozen=True)
class MixSettings:
    """How one stream is heard. Gain in dB (-60..+12), pan -1 (left) .. +1 (right)."""

    gain_db: float = 0.0
    mute: bool = False
    solo: bool = False
    pan: float = 0.0

    def __post_init__(self) -> None:
        _mix_changes(self.to_json())  # the same checks as a PATCH body

    def patched(self, body: object) -> MixSettings:
        """These settings with the fields of ``body`` (a PATCH body, parsed JSON) changed;
        :class:`MixSettingError` for anything that is not a known field of the right type
        in its range."""
        changes = _mix_changes(body)
        return replace(self, **changes) if changes else self

    def to_json(self) -> dict[str, Any]:
        """As ``GET /api/streams`` shows a stream's ``"mix"``."""
        return {"gain_db": self.gain_db, "mute": self.mute, "solo": self.solo, "pan": self.pan}

    @classmethod
    def from_json(cls, obj: object) -> MixSettings:
        return cls().patched(obj)


_MIX_FIELDS = tuple(f.name for f in fields(MixSettings))


def _mix_changes(body: object) -> dict[str, Any]:
    checked = _check_body(body, _MIX_FIELDS, "a stream's mix settings")
    changes: dict[str, Any] = {}
    if "gain_db" in checked:
        changes["gain_db"] = _number(checked, "gain_db", GAIN_DB_MIN, GAIN_DB_MAX, " dB")
    if "pan" in checked:
        changes["pan"] = _number(checked, "pan", PAN_MIN, PAN_MAX, "")
    for name in ("mute", "solo"):
        if name in checked:
            changes[name] = _flag(checked, name)
    return changes


def _master_changes(body: object) -> dict[str, Any]:
    checked = _check_body(body, ("gain_db",), "a device's master settings")
    if "gain_db" in checked:
        return {"gain_db": _number(checked, "gain_db", GAIN_DB_MIN, GAIN_DB_MAX, " dB")}
    return {}


@dataclass(frozen=True)
class MasterSettings:
    """A device's master gain in dB (-60..+12)."""

    gain_db: float = 0.0

    def __post_init__(self) -> None:
        _master_changes(self.to_json())

    def patched(self, body: object) -> MasterSettings:
        changes = _master_changes(body)
        return replace(self, **changes) if changes else self

    def to_json(self) -> dict[str, Any]:
        return {"gain_db": self.gain_db}

    @classmethod
    def from_json(cls, obj: object) -> MasterSettings:
        return cls().patched(obj)


def db_to_gain(gain_db: float) -> float:
    return 1.0 if gain_db == 0.0 else float(10.0 ** (gain_db / 20.0))


def channel_matrix(in_channels: int, out_channels: int, pan: float = 0.0) -> Matrix:
    """How an input's channels reach the device's (rows: input, columns: device), the one
    place the up/down-mix rules live:

    - a mono device gets the average of the input's channels (a stereo downmix keeps the
      level of what is in both channels); pan does nothing there;
    - a mono input on a device with two or more channels is panned between the first two
      by the constant-power law (left cos, right sin of (pan + 1) * pi / 4: -3 dB each at
      the centre, the loudness the same wherever it is panned); further channels get none;
    - otherwise input channel i goes to device channel i (folded modulo the device's
      channels, averaged where several land on one, when the input has more), and pan is
      a balance on the first two: the far side is turned down linearly, the near side
      kept, so that a centred stereo input passes unchanged.
    """
    matrix = np.zeros((in_channels, out_channels))
    if out_channels == 1:
        matrix[:, 0] = 1.0 / in_channels
        return matrix
    if in_channels == 1:
        angle = (pan + 1.0) * math.pi / 4.0
        matrix[0, 0], matrix[0, 1] = math.cos(angle), math.sin(angle)
        return matrix
    for channel in range(in_channels):
        matrix[channel, channel % out_channels] = 1.0
    matrix /= np.maximum(matrix.sum(axis=0, keepdims=True), 1.0)
    matrix[:, 0] *= min(1.0, 1.0 - pan)
    matrix[:, 1] *= min(1.0, 1.0 + pan)
    return matrix


class _Ramp:
    """A gain (any shape) that moves linearly to each new target over ``length`` frames."""

    def __init__(self, value: Matrix, length: int) -> None:
        self.start = value
        self.target = value
        self.length = max(1, length)
        self.done = self.length  # frames of the current ramp already rendered
        self._plan()

    def _plan(self) -> None:
        """How to apply the target once reached, worked out once per change: nothing, as
        it is (the identity), per channel (a diagonal), or a matrix product."""
        target = self.target
        self.silent = not target.any()
        square = target.ndim == 2 and target.shape[0] == target.shape[1]
        self.diagonal: npt.NDArray[np.float32] | None = None
        self.identity = False
        if square and np.array_equal(target, np.diag(target.diagonal())):
            self.identity = bool((target.diagonal() == 1.0).all())
            self.diagonal = target.diagonal().astype(np.float32)
        self.target32 = target.astype(np.float32)

    @property
    def ramping(self) -> bool:
        return self.done < self.length

    def current(self) -> Matrix:
        if not self.ramping:
            return self.target
        return self.start + (self.target - self.start) * (self.done / self.length)

    def set(self, target: Matrix) -> None:
        if np.array_equal(target, self.target):
            return
        self.start = self.current()
        self.target = target
        self.done = 0 if self.length > 1 else self.length
        self._plan()

    def advance(self, frames: int) -> npt.NDArray[np.float32]:
        """Per frame of the next ``frames``, how far along the ramp (0: start, 1: target),
        and move on by that many frames."""
        along = np.minimum(1.0, (self.done + 1 + np.arange(frames)) / self.length)
        self.done = min(self.length, self.done + frames)
        result: npt.NDArray[np.float32] = along.astype(np.float32)
        return result


def _reduction_db(depth: float) -> float:
    """A gain reduction (1 - gain) in dB; a gain rounded to 0 (an input near float32's
    largest values) reads -200 dB."""
    return 20.0 * math.log10(max(1.0 - depth, 1e-10)) if depth else 0.0


class Limiter:
    """Master peak limiter: the mix never leaves [-ceiling, ceiling].

    Design: feed-forward, zero look-ahead, instant attack, exponential release, the same
    gain on every channel (the stereo image stays put). For each frame the gain is the
    lower of what keeps that frame's peak under the ceiling and the gain of the frame
    before released towards 1 with a ``release_ms`` time constant. Why: a look-ahead
    limiter attacks smoothly but delays everything by its look-ahead, and live playback
    must not get later; without look-ahead only an instant attack can guarantee the bound.
    The price is that the first half-wave over the ceiling is flattened from where it
    crosses to its peak; after that the slow release holds the gain nearly constant over a
    cycle, so a loud passage is turned down rather than clipped. Under the ceiling it
    does nothing at all (no multiplication).
    """

    def __init__(self, rate_hz: int, ceiling: float = 1.0, release_ms: float = RELEASE_MS) -> None:
        self.ceiling = ceiling
        self._decay = math.exp(-1000.0 / (release_ms * rate_hz))
        self._depth = 0.0  # gain reduction (1 - gain) at the last frame
        self.max_reduction_db = 0.0

    @property
    def reduction_db(self) -> float:
        """The gain reduction at the last frame processed (0: none)."""
        return _reduction_db(self._depth)

    def process(self, block: Block) -> bool:
        """Limit ``block`` (frames, channels) in place; True if it reduced any frame."""
        if not len(block):
            return False
        peak = np.abs(block).max(axis=1)
        loudest = float(peak.max())
        repaired = not math.isfinite(loudest)
        if repaired:  # an input that overflowed: never let it through
            np.nan_to_num(block, copy=False, nan=0.0, posinf=self.ceiling, neginf=-self.ceiling)
            peak = np.abs(block).max(axis=1)
            loudest = float(peak.max())
        if self._depth == 0.0 and loudest <= self.ceiling:
            return repaired
        needed = 1.0 - np.minimum(1.0, self.ceiling / np.maximum(peak.astype(np.float64), 1e-30))
        depth = np.empty(len(block))
        for start in range(0, len(block), _LIMITER_PIECE):
            piece = needed[start : start + _LIMITER_PIECE]
            # depth[n] = max(needed[k] * decay**(n - k) for k <= n, previous * decay**(n+1)),
            # as one running maximum of needed[k] * decay**-k
            powers = self._decay ** np.arange(len(piece), dtype=np.float64)
            held = np.maximum.accumulate(piece / powers) * powers
            depth[start : start + len(piece)] = np.maximum(held, self._depth * self._decay * powers)
            self._depth = float(depth[start + len(piece) - 1])
        if self._depth < _REDUCTION_FLOOR:
            self._depth = 0.0
        block *= (1.0 - depth).astype(np.float32)[:, None]
        np.clip(block, -self.ceiling, self.ceiling, out=block)  # float rounding at the bound
        deepest = float(depth.max())
        self.max_reduction_db = min(self.max_reduction_db, _reduction_db(deepest))
        return repaired or deepest > 0.0


@dataclass
class InputStats:
    """One input's counters (they only go up)."""

    #: Frames the mix needed and the input did not have (played as silence).
    underrun_frames: int = 0
    #: Frames dropped because more was fed than the mix took (oldest first).
    dropped_frames: int = 0


@dataclass
class MixStats:
    """A mixer's figures, for every view (page, metrics, stats lines)."""

    blocks: int = 0
    frames: int = 0
    #: Blocks in which the limiter turned the mix down.
    limiter_hits: int = 0
    #: The gain reduction at the end of the last block, and the deepest so far (<= 0 dB).
    limiter_reduction_db: float = 0.0
    limiter_max_reduction_db: float = 0.0
    inputs: dict[str, InputStats] = field(default_factory=dict)


class _Input:
    """One input's settings, gain ramp and the audio fed and not yet mixed (a ring)."""

    def __init__(self, channels: int, settings: MixSettings, capacity: int, ramp: _Ramp) -> None:
        self.channels = channels
        self.settings = settings
        self.ramp = ramp
        self.ring = np.zeros((capacity, channels), np.float32)
        self.start = 0
        self.size = 0
        self.stats = InputStats()

    def feed(self, block: Block) -> None:
        capacity = len(self.ring)
        if len(block) >= capacity:
            self.stats.dropped_frames += self.size + len(block) - capacity
            self.ring[:] = block[len(block) - capacity :]
            self.start, self.size = 0, capacity
            return
        overflow = self.size + len(block) - capacity
        if overflow > 0:
            self.stats.dropped_frames += overflow
            self.start = (self.start + overflow) % capacity
            self.size -= overflow
        end = (self.start + self.size) % capacity
        first = min(len(block), capacity - end)
        self.ring[end : end + first] = block[:first]
        self.ring[: len(block) - first] = block[first:]
        self.size += len(block)

    def take(self, frames: int) -> Block:
        """The next ``frames`` (silence where there is nothing; counted). May be a view."""
        capacity = len(self.ring)
        available = min(frames, self.size)
        if available == frames and self.start + frames <= capacity:
            out = self.ring[self.start : self.start + frames]
        else:
            out = np.zeros((frames, self.channels), np.float32)
            first = min(available, capacity - self.start)
            out[:first] = self.ring[self.start : self.start + first]
            out[first:available] = self.ring[: available - first]
            self.stats.underrun_frames += frames - available
        self.start = (self.start + available) % capacity
        self.size -= available
        return out


class Mixer:
    """The mix for one output device of ``channels`` at ``rate_hz``."""

    def __init__(
        self,
        channels: int,
        rate_hz: int,
        master: MasterSettings | None = None,
        ramp_ms: float = RAMP_MS,
        limiter: Limiter | None = None,
        max_buffered_s: float = MAX_BUFFERED_S,
    ) -> None:
        if channels < 1 or rate_hz < 1:
            raise ValueError("a mixer needs at least one channel and a positive rate")
        self.channels = channels
        self.rate_hz = rate_hz
        self._ramp_frames = round(ramp_ms * rate_hz / 1000.0)
        self._capacity = max(1, round(max_buffered_s * rate_hz))
        self.limiter = limiter if limiter is not None else Limiter(rate_hz)
        self._inputs: dict[str, _Input] = {}
        self._master = master or MasterSettings()
        self._master_ramp = _Ramp(np.array(db_to_gain(self._master.gain_db)), self._ramp_frames)
        self._stats = MixStats()

    @property
    def inputs(self) -> list[str]:
        return list(self._inputs)

    @property
    def master(self) -> MasterSettings:
        return self._master

    def set_master(self, master: MasterSettings) -> None:
        self._master = master
        self._master_ramp.set(np.array(db_to_gain(master.gain_db)))

    def add_input(self, name: str, channels: int, settings: MixSettings | None = None) -> None:
        """A stream starts playing here, at its settings from its first sample (no fade:
        a stream alone plays exactly what it gets); a solo of it turns the others down
        (ramped)."""
        if name in self._inputs:
            raise ValueError(f"{name!r} is already an input of this mix")
        if channels < 1:
            raise ValueError("an input needs at least one channel")
        settings = settings or MixSettings()
        soloing = settings.solo or any(entry.settings.solo for entry in self._inputs.values())
        ramp = _Ramp(self._target(channels, settings, soloing), self._ramp_frames)
        self._inputs[name] = _Input(channels, settings, self._capacity, ramp)
        self._stats.inputs[name] = self._inputs[name].stats
        self._retarget()

    def remove_input(self, name: str) -> None:
        del self._inputs[name]
        del self._stats.inputs[name]
        self._retarget()

    def settings(self, name: str) -> MixSettings:
        return self._inputs[name].settings

    def set_settings(self, name: str, settings: MixSettings) -> None:
        """Heard from the next block on, ramped."""
        self._inputs[name].settings = settings
        self._retarget()

    def feed(self, name: str, block: npt.ArrayLike) -> None:
        """Audio for input ``name`` at the device's rate, (frames, channels) float32."""
        entry = self._inputs[name]
        samples = np.asarray(block, np.float32)
        if samples.ndim != 2 or samples.shape[1] != entry.channels:
            raise ValueError(
                f"input {name!r} takes (frames, {entry.channels}) blocks, not {samples.shape}"
            )
        entry.feed(samples)

    def _retarget(self) -> None:
        """Every input's gain matrix from the settings: solo changes the others' too."""
        soloing = any(entry.settings.solo for entry in self._inputs.values())
        for entry in self._inputs.values():
            entry.ramp.set(self._target(entry.channels, entry.settings, soloing))

    def _target(self, channels: int, settings: MixSettings, soloing: bool) -> Matrix:
        heard = not settings.mute and (settings.solo or not soloing)
        gain = db_to_gain(settings.gain_db) if heard else 0.0
        return channel_matrix(channels, self.channels, settings.pan) * gain

    def render(self, frames: int) -> Block:
        """The next ``frames`` of the mix, (frames, channels) float32 within +-1."""
        # an input near float32's largest values overflows to inf: the limiter handles it
        with np.errstate(over="ignore", invalid="ignore"):
            return self._render(frames)

    def _render(self, frames: int) -> Block:
        mix: Block | None = None
        for entry in self._inputs.values():
            block = entry.take(frames)
            contribution = self._contribution(block, entry.ramp, frames)
            if contribution is None:
                continue
            if mix is None:  # the first one is taken as it is: bit for bit when alone
                mix = contribution.copy() if contribution is block else contribution
            else:
                mix += contribution
        if mix is None:
            mix = np.zeros((frames, self.channels), np.float32)
        ramp = self._master_ramp
        if ramp.ramping:
            start, target = float(ramp.start), float(ramp.target)
            mix *= (start + (target - start) * ramp.advance(frames))[:, None]
        elif float(ramp.target) != 1.0:
            mix *= np.float32(ramp.target)
        stats = self._stats
        if self.limiter.process(mix):
            stats.limiter_hits += 1
        stats.blocks += 1
        stats.frames += frames
        return mix

    def _contribution(self, block: Block, ramp: _Ramp, frames: int) -> Block | None:
        """What one input adds to the mix (None: nothing); ``block`` itself where its gain
        matrix is the identity."""
        if ramp.ramping:
            start = ramp.start.astype(np.float32)
            delta = (ramp.target - ramp.start).astype(np.float32)
            along = ramp.advance(frames)[:, None]
            result: Block = block @ start + (block @ delta) * along
            return result
        if ramp.silent:
            return None
        if ramp.identity:
            return block
        if ramp.diagonal is not None:
            scaled: Block = block * ramp.diagonal
            return scaled
        mixed: Block = block @ ramp.target32
        return mixed

    def stats(self) -> MixStats:
        """A snapshot of the figures (reading resets nothing)."""
        stats = self._stats
        return MixStats(
            blocks=stats.blocks,
            frames=stats.frames,
            limiter_hits=stats.limiter_hits,
            limiter_reduction_db=self.limiter.reduction_db,
            limiter_max_reduction_db=self.limiter.max_reduction_db,
            inputs={name: replace(figures) for name, figures in stats.inputs.items()},
        )


class MixBoard:
    """Every stream's settings by name and every device's master by name, as the shell
    keeps them across reconnects and restarts. Defaults are not stored."""

    VERSION = 1

    def __init__(self) -> None:
        self._streams: dict[str, MixSettings] = {}
        self._masters: dict[str, MasterSettings] = {}

    def settings(self, stream: str) -> MixSettings:
        return self._streams.get(stream, MixSettings())

    def patch(self, stream: str, body: object) -> MixSettings:
        """Apply a PATCH body to a stream's settings; the new settings (nothing changes
        when the body is refused). The stream becomes the most recently changed."""
        settings = self.settings(stream).patched(body)
        self._streams.pop(stream, None)
        self._store(self._streams, stream, settings, MixSettings())
        return settings

    def forget_oldest(self, keep: int) -> list[str]:
        """Keep the ``keep`` streams changed last; the names of those forgotten."""
        gone = list(self._streams)[: max(0, len(self._streams) - keep)]
        for name in gone:
            del self._streams[name]
        return gone

    def master(self, device: str) -> MasterSettings:
        return self._masters.get(device, MasterSettings())

    def patch_master(self, device: str, body: object) -> MasterSettings:
        master = self.master(device).patched(body)
        self._store(self._masters, device, master, MasterSettings())
        return master

    @staticmethod
    def _store(table: dict[str, Any], name: str, value: object, default: object) -> None:
        if value == default:
            table.pop(name, None)
        else:
            table[name] = value

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "streams": {name: s.to_json() for name, s in sorted(self._streams.items())},
            "masters": {name: m.to_json() for name, m in sorted(self._masters.items())},
        }

    @classmethod
    def from_json(cls, obj: object) -> MixBoard:
        """A board from what :meth:`to_json` gave; :class:`MixSettingError` saying where a
        saved state is wrong (the shell decides whether to start from defaults)."""
        if not isinstance(obj, Mapping) or obj.get("version") != cls.VERSION:
            raise MixSettingError(f"the mix state is not a version {cls.VERSION} mix state")
        board = cls()
        board._streams = _load_table(obj, "streams", MixSettings.from_json)
        board._masters = _load_table(obj, "masters", MasterSettings.from_json)
        return board


def _load_table(
    state: Mapping[str, Any], key: str, parse: Callable[[object], _Settings]
) -> dict[str, _Settings]:
    entries = state.get(key, {})
    if not isinstance(entries, Mapping):
        raise MixSettingError(f"the mix state's {key!r} must be a JSON object", key)
    table: dict[str, _Settings] = {}
    for name, entry in entries.items():
        try:
            table[str(name)] = parse(entry)
        except MixSettingError as exc:
            raise MixSettingError(f"mix state of {name!r}: {exc}", exc.field) from exc
    return table
