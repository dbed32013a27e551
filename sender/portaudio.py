"""PortAudio access shared by both sides: loading sounddevice, finding devices."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal, cast

from micwire.common.errors import DeviceError

Kind = Literal["input", "output"]
INSTALL_HINT = (
    "install PortAudio (Debian/Ubuntu: `sudo apt-get install libportaudio2`, "
    "macOS: `brew install portaudio`)"
)


def sounddevice() -> ModuleType:
    """Import sounddevice, turning a missing PortAudio into a DeviceError with the fix."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError when libportaudio is not found
        raise DeviceError(f"PortAudio library not found: {INSTALL_HINT}") from exc
    return cast(ModuleType, sd)


def resolve_device(spec: str | int | None, kind: Kind) -> int:
    """Index of the device named by ``spec``: an index, a name substring, or None (default)."""
    sd = sounddevice()
    hint = "`micwire devices` lists them"
    try:
        if spec is None or spec == "":
            info: Any = sd.query_devices(kind=kind)
        elif isinstance(spec, int) or spec.strip().isdigit():
            info = sd.query_devices(int(spec))
            if info[f"max_{kind}_channels"] < 1:
                raise DeviceError(f"device {spec} ({info['name']}) has no {kind} channels; {hint}")
        else:
            info = sd.query_devices(spec, kind=kind)
    except sd.PortAudioError as exc:
        what = f"{kind} device {spec}" if spec not in (None, "") else f"default {kind} device"
        raise DeviceError(f"no {what} ({exc.args[0] if exc.args else exc}); {hint}") from exc
    except ValueError as exc:  # no match, several matches, or a bad index
        raise DeviceError(f"no single {kind} device matches {spec!r}: {exc}; {hint}") from exc
    return int(info["index"])


def device_info(index: int) -> dict[str, Any]:
    return dict(sounddevice().query_devices(index))


def list_devices() -> str:
    """The device table, as printed by ``micwire devices``."""
    sd = sounddevice()
    devices = sd.query_devices()
    if len(devices) == 0:
        return "no audio devices found (PortAudio sees no sound card or sound server)"
    hostapis = sd.query_hostapis()
    lines = []
    for d in devices:
        api = hostapis[d["hostapi"]]["name"]
        lines.append(
            f"{d['index']:>3}  {d['name']}  ({api}; {d['max_input_channels']} in, "
            f"{d['max_output_channels']} out, {d['default_samplerate']:g} Hz)"
        )
    return "\n".join(lines)
