"""Finding a sound device by what a person types: an index, a name substring, or nothing.

Pure: the caller passes the sounddevice module in (``sd``), so this module imports no
PortAudio and both sides share one set of rules and messages. Both load it the same way
too, with :func:`sounddevice`, which imports it only when called.
"""

from __future__ import annotations

from typing import Any, Literal

from .errors import DeviceError

Kind = Literal["input", "output"]
INSTALL_HINT = (
    "install PortAudio (Debian/Ubuntu: `sudo apt-get install libportaudio2`, "
    "macOS: `brew install portaudio`)"
)
LIST_HINT = "`micwire devices` lists them"


def sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio into a DeviceError with the fix.

    Importing sounddevice loads PortAudio and scans the sound devices, so it happens here,
    on the first call from a shell that opens a device, never when common/ is imported."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError when libportaudio is not found
        raise DeviceError(f"PortAudio library not found: {INSTALL_HINT}") from exc
    return sd


def resolve_device(sd: Any, spec: str | int | None, kind: Kind) -> int:
    """Index of the device named by ``spec``: an index, a name substring, or None (default)."""
    try:
        if spec is None or spec == "":
            info: Any = sd.query_devices(kind=kind)
        elif isinstance(spec, int) or spec.strip().isdigit():
            info = sd.query_devices(int(spec))
            if info[f"max_{kind}_channels"] < 1:
                raise DeviceError(
                    f"device {spec} ({info['name']}) has no {kind} channels; {LIST_HINT}"
                )
        else:
            info = sd.query_devices(spec, kind=kind)
    except sd.PortAudioError as exc:
        what = f"{kind} device {spec}" if spec not in (None, "") else f"default {kind} device"
        raise DeviceError(f"no {what} ({exc.args[0] if exc.args else exc}); {LIST_HINT}") from exc
    except ValueError as exc:  # no match, several matches, or a bad index
        raise DeviceError(f"no single {kind} device matches {spec!r}: {exc}; {LIST_HINT}") from exc
    return int(info["index"])


def describe_devices(devices: list[dict[str, Any]], hostapis: list[dict[str, Any]]) -> str:
    """The device table, as ``micwire devices`` prints it."""
    if not devices:
        return "no audio devices found (PortAudio sees no sound card or sound server)"
    lines = []
    for d in devices:
        api = hostapis[d["hostapi"]]["name"]
        lines.append(
            f"{d['index']:>3}  {d['name']}  ({api}; {d['max_input_channels']} in, "
            f"{d['max_output_channels']} out, {d['default_samplerate']:g} Hz)"
        )
    return "\n".join(lines)
