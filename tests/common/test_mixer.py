"""The mixer's core: settings as the API takes them, the mix as a listener hears it."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from micwire.common.errors import MicwireError, MixSettingError
from micwire.common.mixer import (
    Limiter,
    MasterSettings,
    MixBoard,
    Mixer,
    MixSettings,
    channel_matrix,
)

RATE = 48000
RAMP = 240  # 5 ms at 48 kHz: the default ramp


def tone(
    hz: float, seconds: float, amplitude: float = 0.5, channels: int = 1, phase: float = 0.0
) -> np.ndarray:
    wave = amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE + phase)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def from_int16(seed: int, frames: int, channels: int) -> np.ndarray:
    """What the shell feeds: decoded int16 audio as float32 (full scale 1.0)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, (frames, channels), dtype=np.int16) / np.float32(32768)


def play(mixer: Mixer, inputs: dict[str, np.ndarray], block: int = 480) -> np.ndarray:
    """Feed and render block by block, as a device callback would."""
    frames = min(len(signal) for signal in inputs.values())
    out = []
    for start in range(0, frames - block + 1, block):
        for name, signal in inputs.items():
            mixer.feed(name, signal[start : start + block])
        out.append(mixer.render(block))
    return np.concatenate(out)


def level_db(samples: np.ndarray) -> float:
    return 20 * math.log10(
        max(float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))), 1e-12)
    )


# -- settings as a PATCH body -------------------------------------------------------------


def test_a_patch_changes_only_the_fields_it_names() -> None:
    base = MixSettings(gain_db=-3.0, pan=0.25)
    changed = base.patched({"mute": True, "gain_db": -6})
    assert changed == MixSettings(gain_db=-6.0, mute=True, solo=False, pan=0.25)
    assert changed.to_json() == {"gain_db": -6.0, "mute": True, "solo": False, "pan": 0.25}
    assert base.patched({}) is base
    assert MixSettings.from_json(changed.to_json()) == changed


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (
            {"volume": 3},
            "volume",
            "unknown field 'volume' in a stream's mix settings: the "
            "fields are gain_db, mute, solo, pan",
        ),
        (
            {"gain_db": 13},
            "gain_db",
            "gain_db must be a number from -60 to +12 dB: 13 is out of range",
        ),
        ({"gain_db": -60.5}, "gain_db", "from -60 to +12 dB: -60.5 is out of range"),
        ({"gain_db": float("nan")}, "gain_db", "nan is out of range"),
        ({"gain_db": "-6"}, "gain_db", "gain_db must be a number from -60 to +12 dB, not '-6'"),
        ({"gain_db": True}, "gain_db", "not True"),
        ({"pan": 1.5}, "pan", "pan must be a number from -1 to +1: 1.5 is out of range"),
        ({"pan": None}, "pan", "pan must be a number from -1 to +1, not None"),
        ({"mute": 1}, "mute", "mute must be true or false, not 1"),
        ({"solo": "yes"}, "solo", "solo must be true or false, not 'yes'"),
    ],
)
def test_a_bad_patch_is_refused_naming_the_field_and_what_it_allows(
    body: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(MixSettingError) as caught:
        MixSettings().patched(body)
    assert says in str(caught.value)
    assert caught.value.field == field
    # the API turns it into a 400: it is the project's error, and a ValueError
    assert isinstance(caught.value, MicwireError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("body", [[1, 2], "mute", None, {1: True}])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    with pytest.raises(MixSettingError, match="must be a JSON object with any of the fields"):
        MixSettings().patched(body)


def test_settings_cannot_be_built_out_of_range() -> None:
    with pytest.raises(MixSettingError, match="gain_db"):
        MixSettings(gain_db=20.0)
    with pytest.raises(MixSettingError, match="gain_db"):
        MasterSettings(gain_db=-100.0)


def test_master_settings_take_a_gain_only() -> None:
    master = MasterSettings().patched({"gain_db": -12})
    assert master.to_json() == {"gain_db": -12.0}
    assert master.patched({}) is master
    assert MasterSettings.from_json({"gain_db": 3}) == MasterSettings(3.0)
    with pytest.raises(MixSettingError, match=r"unknown field 'pan'.*the fields are gain_db"):
        master.patched({"pan": 0})


# -- up/down-mix rules ---------------------------------------------------------------------


@pytest.mark.parametrize("pan", [-1.0, -0.5, 0.0, 0.3, 1.0])
def test_a_mono_input_is_panned_on_a_stereo_device_at_constant_power(pan: float) -> None:
    left, right = channel_matrix(1, 2, pan)[0]
    assert left**2 + right**2 == pytest.approx(1.0)
    assert left >= 0 and right >= 0


def test_channel_rules() -> None:
    np.testing.assert_allclose(channel_matrix(1, 2, -1.0), [[1.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(channel_matrix(1, 2, 0.0), [[math.sqrt(0.5)] * 2])
    np.testing.assert_array_equal(channel_matrix(1, 1, 0.7), [[1.0]])  # nowhere to pan
    np.testing.assert_array_equal(channel_matrix(2, 1, 0.0), [[0.5], [0.5]])
    np.testing.assert_array_equal(channel_matrix(2, 2, 0.0), np.eye(2))
    np.testing.assert_array_equal(channel_matrix(2, 2, 0.5), [[0.5, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(channel_matrix(2, 2, -0.5), [[1.0, 0.0], [0.0, 0.5]])
    np.testing.assert_array_equal(channel_matrix(2, 4, 0.0), np.eye(2, 4))
    folded = channel_matrix(6, 2, 0.0)  # 0, 2, 4 -> left; 1, 3, 5 -> right, averaged
    np.testing.assert_allclose(folded[:, 0], [1 / 3, 0, 1 / 3, 0, 1 / 3, 0])
    np.testing.assert_allclose(folded.sum(axis=0), [1.0, 1.0])


# -- the mix -------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_one_input_alone_at_0_db_centred_comes_out_bit_for_bit(channels: int) -> None:
    signal = from_int16(1, 48000, channels)
    mixer = Mixer(channels, RATE)
    mixer.add_input("kitchen", channels)
    out = play(mixer, {"kitchen": signal}, block=480)
    assert out.dtype == np.float32
    assert out.tobytes() == signal[: len(out)].tobytes()
    assert mixer.stats().limiter_hits == 0


def test_inputs_are_summed_in_float() -> None:
    a, b = from_int16(2, 4800, 2) * 0.5, from_int16(3, 4800, 2) * 0.5
    mixer = Mixer(2, RATE)
    mixer.add_input("a", 2)
    mixer.add_input("b", 2)
    out = play(mixer, {"a": a, "b": b}, block=480)
    np.testing.assert_array_equal(out, a + b)


def test_a_gain_of_minus_6_db_is_heard_as_minus_6_db() -> None:
    signal = tone(440, 1.0)
    mixer = Mixer(1, RATE)
    mixer.add_input("guest", 1, MixSettings(gain_db=-6.0))
    out = play(mixer, {"guest": signal})
    assert level_db(out) - level_db(signal[: len(out)]) == pytest.approx(-6.0, abs=0.01)


def largest_step(samples: np.ndarray) -> float:
    return float(np.abs(np.diff(samples, axis=0)).max())


@pytest.mark.parametrize(
    "change",
    [{"mute": True}, {"gain_db": -60.0}, {"gain_db": 12.0}, {"pan": 1.0}, {"solo": True}],
)
def test_a_change_is_ramped_without_a_click(change: dict[str, object]) -> None:
    """A 100 Hz tone on a stereo device; mid-block, a setting changes. The largest step
    from one sample to the next stays near the tone's own (a jump of the gain would be a
    step of up to the tone's amplitude: a click)."""
    signal = tone(100, 0.5, amplitude=0.2, phase=np.pi / 2)  # at a peak when it changes
    natural = largest_step(signal)

    def largest_step_around_the_change(ramp_ms: float) -> float:
        mixer = Mixer(2, RATE, ramp_ms=ramp_ms)
        mixer.add_input("guest", 1)
        mixer.add_input("other", 1, MixSettings(mute=True))  # solo has someone to silence
        before = play(mixer, {"guest": signal[:12000], "other": signal[:12000] * 0})
        mixer.set_settings("guest", mixer.settings("guest").patched(change))
        after = play(mixer, {"guest": signal[12000:], "other": signal[12000:] * 0})
        return largest_step(np.concatenate([before, after])[11000:13000])

    # gain +12 dB: the tone's own steps grow fourfold; nothing more
    allowed = natural * (4.0 if change.get("gain_db") == 12.0 else 1.0) * 1.05
    assert largest_step_around_the_change(5.0) <= allowed
    if "solo" not in change:  # soloing the only one heard changes nothing
        assert largest_step_around_the_change(0.0) > 2 * allowed  # what the test would catch


def test_mute_is_at_least_40_db_down_within_the_ramp_and_others_are_untouched() -> None:
    mixer = Mixer(1, RATE)
    mixer.add_input("a", 1)
    mixer.add_input("b", 1)
    a, b = tone(440, 0.2), tone(1000, 0.2)
    play(mixer, {"a": a[:4800], "b": b[:4800]}, block=480)
    mixer.set_settings("a", MixSettings(mute=True))
    out = play(mixer, {"a": a[4800:], "b": b[4800:]}, block=480)
    np.testing.assert_array_equal(out[RAMP:], b[4800 + RAMP : 4800 + len(out)])


def test_solo_is_a_daws_solo() -> None:
    """When any input is soloed only soloed inputs are heard; a soloed input that leaves
    (its sender went away) silences nobody."""
    a, b, c = (from_int16(seed, 9600, 1) * np.float32(0.5) for seed in (4, 5, 6))
    mixer = Mixer(1, RATE, ramp_ms=0)
    for name in "abc":
        mixer.add_input(name, 1)
    mixer.set_settings("b", MixSettings(solo=True))
    mixer.set_settings("c", MixSettings(solo=True, gain_db=-60))
    out = play(mixer, {"a": a[:4800], "b": b[:4800], "c": c[:4800]})
    np.testing.assert_allclose(out, b[: len(out)] + c[: len(out)] * 10 ** (-3), atol=1e-7)
    mixer.remove_input("b")
    mixer.remove_input("c")
    assert mixer.inputs == ["a"]
    out = play(mixer, {"a": a[4800:]})
    np.testing.assert_array_equal(out, a[4800 : 4800 + len(out)])


def test_a_soloed_input_that_joins_turns_the_others_down() -> None:
    mixer = Mixer(1, RATE, ramp_ms=0)
    mixer.add_input("a", 1)
    mixer.add_input("b", 1, MixSettings(solo=True))
    b = from_int16(7, 960, 1)
    out = play(mixer, {"a": from_int16(8, 960, 1), "b": b}, block=480)
    np.testing.assert_array_equal(out, b[: len(out)])


def test_pan_moves_a_mono_guest_between_left_and_right() -> None:
    signal = tone(440, 0.5)
    mixer = Mixer(2, RATE)
    mixer.add_input("guest", 1, MixSettings(pan=-0.5))
    out = play(mixer, {"guest": signal})[RAMP:]
    left, right = level_db(out[:, 0]), level_db(out[:, 1])
    source = level_db(signal)
    angle = 0.25 * math.pi / 2
    assert left - source == pytest.approx(20 * math.log10(math.cos(angle)), abs=0.01)
    assert right - source == pytest.approx(20 * math.log10(math.sin(angle)), abs=0.01)
    # constant power: the two sides together carry the source's power
    assert 10 * math.log10(10 ** (left / 10) + 10 ** (right / 10)) == pytest.approx(
        source, abs=0.01
    )


def test_a_stereo_input_on_a_mono_device_is_downmixed() -> None:
    left, right = tone(440, 0.1), tone(660, 0.1)
    mixer = Mixer(1, RATE)
    mixer.add_input("stereo", 2)
    out = play(mixer, {"stereo": np.hstack([left, right])}, block=480)
    np.testing.assert_allclose(out[:, 0], (left[:, 0] + right[:, 0])[: len(out)] / 2, atol=1e-7)


def test_the_master_gain_scales_the_mix_ramped() -> None:
    signal = tone(440, 1.0, amplitude=0.25)
    mixer = Mixer(1, RATE, master=MasterSettings(gain_db=-6))
    assert mixer.master.gain_db == -6.0
    mixer.add_input("guest", 1)
    out = play(mixer, {"guest": signal[:24000]})
    assert level_db(out) - level_db(signal[: len(out)]) == pytest.approx(-6.0, abs=0.01)
    mixer.set_master(MasterSettings(gain_db=6.0))
    out = play(mixer, {"guest": signal[24000:]})
    assert largest_step(out) <= largest_step(signal) * 2.0 * 1.05
    assert level_db(out[RAMP:]) - level_db(signal[: len(out) - RAMP]) == pytest.approx(
        6.0, abs=0.01
    )
    mixer.set_master(MasterSettings())
    play(mixer, {"guest": signal[:4800]})
    out = play(mixer, {"guest": signal[4800:9600]})
    np.testing.assert_array_equal(out, signal[4800 : 4800 + len(out)])


def test_a_change_during_a_ramp_continues_from_where_the_gain_is() -> None:
    signal = np.full((4800, 1), 0.5, np.float32)  # DC: any jump of the gain shows
    mixer = Mixer(1, RATE)
    mixer.add_input("guest", 1)
    mixer.feed("guest", signal)
    out = [mixer.render(100)]
    mixer.set_settings("guest", MixSettings(mute=True))
    out.append(mixer.render(100))  # 100 of the 240 ramp frames
    mixer.set_settings("guest", MixSettings(gain_db=6))
    out.append(mixer.render(1000))
    mix = np.concatenate(out)[:, 0]
    assert largest_step(mix) <= 0.5 * 2 / RAMP * 1.01
    assert mix[-1] == pytest.approx(0.5 * 10 ** (6 / 20))


# -- the limiter ---------------------------------------------------------------------------


def test_loud_guests_together_are_limited_not_clipped_and_counted() -> None:
    loud = tone(220, 1.0, amplitude=0.9)
    quiet = tone(220, 2.0, amplitude=0.3)
    mixer = Mixer(1, RATE)
    mixer.add_input("a", 1)
    mixer.add_input("b", 1)
    both = play(mixer, {"a": loud, "b": quiet[:48000]}, block=480)
    assert np.abs(both).max() <= 1.0
    stats = mixer.stats()
    assert stats.limiter_hits >= 90  # nearly every block of the loud second
    assert stats.limiter_max_reduction_db == pytest.approx(20 * math.log10(1 / 1.2), abs=0.05)
    # a held gain, not a clipper: past the first cycle the waveform keeps its shape
    settled = both[4800:]
    shape = settled / np.abs(settled).max()
    np.testing.assert_allclose(
        shape[:, 0], tone(220, 1.0)[4800 : 4800 + len(shape), 0] * 2, atol=0.02
    )
    # the level comes back once the loud one is gone
    mixer.remove_input("a")
    alone = play(mixer, {"b": quiet[48000:]}, block=480)
    np.testing.assert_array_equal(alone[-4800:], quiet[-4800 - (48000 - len(alone)) :][:4800])
    assert mixer.stats().limiter_reduction_db == 0.0


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.lists(
        hnp.arrays(
            np.float32,
            st.tuples(st.integers(0, 600), st.just(2)),
            elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=4,
    ),
    gains=st.lists(st.floats(-60, 12), min_size=1, max_size=4),
)
def test_the_limiter_never_lets_the_mix_past_full_scale(
    blocks: list[np.ndarray], gains: list[float]
) -> None:
    mixer = Mixer(2, RATE, master=MasterSettings(gain_db=12))
    for index, gain in enumerate(gains):
        mixer.add_input(str(index), 2, MixSettings(gain_db=gain))
    for block in blocks:
        for index in range(len(gains)):
            mixer.feed(str(index), block)
        out = mixer.render(len(block))
        assert out.shape == (len(block), 2)
        assert np.all(np.abs(out) <= 1.0)


def test_the_limiter_turns_non_finite_input_into_bounded_output() -> None:
    limiter = Limiter(RATE)
    block = np.array([[np.inf, -np.inf], [np.nan, 0.5]], np.float32)
    assert limiter.process(block)
    assert np.all(np.isfinite(block)) and np.all(np.abs(block) <= 1.0)
    assert not limiter.process(np.zeros((0, 2), np.float32))


def test_the_limiters_release_ends_and_then_it_does_nothing() -> None:
    limiter = Limiter(RATE, release_ms=1.0)
    assert limiter.process(np.full((10, 1), 2.0, np.float32))
    assert limiter.reduction_db == pytest.approx(-6.02, abs=0.01)
    quiet = np.full((5000, 1), 0.5, np.float32)
    assert limiter.process(quiet.copy())  # releasing: still turned down at first
    assert limiter.reduction_db == 0.0
    again = quiet.copy()
    assert not limiter.process(again)
    assert again.tobytes() == quiet.tobytes()


# -- feeding ---------------------------------------------------------------------------------


def test_blocks_of_any_size_come_out_in_order_through_the_ring() -> None:
    signal = from_int16(9, 20000, 2)
    mixer = Mixer(2, RATE, max_buffered_s=0.02)  # a ring of 960 frames
    mixer.add_input("a", 2)
    rng = np.random.default_rng(0)
    fed = rendered = 0
    out = []
    while fed < len(signal):
        chunk = signal[fed : fed + int(rng.integers(1, 500))]
        mixer.feed("a", chunk)
        fed += len(chunk)
        while rendered + 300 <= fed:
            out.append(mixer.render(300))
            rendered += 300
    joined = np.concatenate(out)
    assert joined.tobytes() == signal[: len(joined)].tobytes()
    assert mixer.stats().inputs["a"].underrun_frames == 0
    assert mixer.stats().inputs["a"].dropped_frames == 0


def test_what_an_input_lacks_is_silence_and_what_overflows_is_dropped_oldest_first() -> None:
    mixer = Mixer(1, RATE, max_buffered_s=0.01)  # 480 frames
    mixer.add_input("a", 1)
    signal = from_int16(10, 2000, 1)
    mixer.feed("a", signal[:100])
    out = mixer.render(300)
    assert out[:100].tobytes() == signal[:100].tobytes() and not out[100:].any()
    mixer.feed("a", signal[:400])
    mixer.feed("a", signal[400:600])  # 120 over
    np.testing.assert_array_equal(mixer.render(480), signal[120:600])
    mixer.feed("a", signal[600:])  # more than the ring at once: its newest part stays
    np.testing.assert_array_equal(mixer.render(480), signal[-480:])
    figures = mixer.stats().inputs["a"]
    assert figures.underrun_frames == 200
    assert figures.dropped_frames == 120 + (1400 - 480)


def test_stats_are_a_snapshot_and_reading_resets_nothing() -> None:
    mixer = Mixer(1, RATE)
    mixer.add_input("a", 1)
    mixer.render(100)
    first = mixer.stats()
    first.inputs["a"].underrun_frames = 0
    second = mixer.stats()
    assert (second.blocks, second.frames, second.inputs["a"].underrun_frames) == (1, 100, 100)
    assert mixer.render(0).shape == (0, 1)


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one channel"):
        Mixer(0, RATE)
    mixer = Mixer(2, RATE)
    mixer.add_input("a", 1)
    with pytest.raises(ValueError, match="already an input"):
        mixer.add_input("a", 1)
    with pytest.raises(ValueError, match="at least one channel"):
        mixer.add_input("b", 0)
    with pytest.raises(ValueError, match=r"takes \(frames, 1\) blocks"):
        mixer.feed("a", np.zeros((10, 2), np.float32))
    with pytest.raises(KeyError):
        mixer.feed("nobody", np.zeros((10, 1), np.float32))
    assert np.array_equal(Mixer(2, RATE).render(4), np.zeros((4, 2), np.float32))


# -- the board -------------------------------------------------------------------------------


def test_the_board_keeps_settings_by_name_through_json() -> None:
    board = MixBoard()
    assert board.settings("guest-1") == MixSettings()
    assert board.patch("guest-1", {"gain_db": -6, "pan": -0.5}).gain_db == -6.0
    board.patch("guest-2", {"mute": True})
    board.patch("guest-3", {"solo": True})
    board.patch("guest-3", {"solo": False})  # back to the defaults: not kept
    board.patch_master("USB Headset", {"gain_db": -3})
    board.patch_master("hdmi", {"gain_db": 0})
    saved = json.loads(json.dumps(board.to_json()))
    assert saved == {
        "version": 1,
        "streams": {
            "guest-1": {"gain_db": -6.0, "mute": False, "solo": False, "pan": -0.5},
            "guest-2": {"gain_db": 0.0, "mute": True, "solo": False, "pan": 0.0},
        },
        "masters": {"USB Headset": {"gain_db": -3.0}},
    }
    restored = MixBoard.from_json(saved)
    assert restored.settings("guest-1") == board.settings("guest-1")
    assert restored.master("USB Headset") == MasterSettings(-3.0)
    assert restored.to_json() == saved


def test_a_refused_patch_changes_nothing_on_the_board() -> None:
    board = MixBoard()
    board.patch("guest", {"gain_db": -6})
    with pytest.raises(MixSettingError):
        board.patch("guest", {"gain_db": -3, "pan": 9})
    assert board.settings("guest").gain_db == -6.0


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ([], "not a version 1 mix state"),
        ({"version": 2}, "not a version 1 mix state"),
        ({"version": 1, "streams": []}, "the mix state's 'streams' must be a JSON object"),
        (
            {"version": 1, "streams": {"guest": {"gain_db": 99}}},
            "mix state of 'guest': gain_db must be a number from -60 to +12 dB",
        ),
        ({"version": 1, "masters": {"hdmi": {"mute": True}}}, "mix state of 'hdmi': unknown"),
    ],
)
def test_a_bad_saved_state_says_where(state: object, says: str) -> None:
    with pytest.raises(MixSettingError, match=re.escape(says)):
        MixBoard.from_json(state)
    assert MixBoard.from_json({"version": 1}).to_json()["streams"] == {}
