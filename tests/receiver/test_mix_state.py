"""The mix settings a receiver keeps in its state directory (receiver/mixer.py MixState):
they come back after a restart, a broken file is said and replaced by defaults, and a
refused change leaves the file as it was."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from micwire.common.errors import MixSettingError
from micwire.common.mixer import MasterSettings, MixSettings
from micwire.receiver.mixstate import MIX_STATE, MixState


def test_settings_come_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / MIX_STATE  # the state directory is made when first needed
    state = MixState(path)
    state.patch("anna", {"gain_db": -6, "mute": True})
    state.patch_master("USB Headset", {"gain_db": -3})
    again = MixState(path)
    assert again.settings("anna") == MixSettings(gain_db=-6.0, mute=True)
    assert again.settings("bob") == MixSettings()
    assert again.master("USB Headset") == MasterSettings(gain_db=-3.0)


def test_a_refused_change_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / MIX_STATE
    state = MixState(path)
    state.patch("anna", {"pan": 0.5})
    before = path.read_text()
    with pytest.raises(MixSettingError, match="gain_db must be a number from -60 to \\+12"):
        state.patch("anna", {"pan": -0.5, "gain_db": 99})
    assert path.read_text() == before and state.settings("anna").pan == 0.5


@pytest.mark.parametrize(
    "text", ["{not json", json.dumps({"version": 9}), json.dumps({"version": 1, "streams": 3})]
)
def test_a_broken_file_is_said_and_the_mix_starts_at_0_db(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / MIX_STATE
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="micwire.receiver"):
        state = MixState(path)
    assert state.settings("anna") == MixSettings()
    assert f"the mix settings in {path} were not read" in caplog.text


def test_a_state_that_cannot_be_written_is_said_and_the_change_still_heard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the state directory should be
    state = MixState(blocker / MIX_STATE)
    with caplog.at_level(logging.WARNING, logger="micwire.receiver"):
        assert state.patch("anna", {"mute": True}).mute
    assert "the mix settings could not be kept" in caplog.text
    assert state.settings("anna").mute


def test_without_a_state_directory_settings_live_in_memory() -> None:
    state = MixState(None)
    assert state.patch("anna", {"solo": True}).solo and state.settings("anna").solo


def test_only_the_streams_changed_last_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Names that come and go (anyone may send, on a receiver without a token) must not
    grow the file for ever: the settings of the streams changed longest ago go first."""
    monkeypatch.setattr("micwire.receiver.mixstate.MAX_STREAMS", 3)
    path = tmp_path / MIX_STATE
    state = MixState(path)
    for name in ("a", "b", "c"):
        state.patch(name, {"mute": True})
    state.patch("a", {"gain_db": -3})  # a is the newest again
    with caplog.at_level(logging.INFO, logger="micwire.receiver"):
        state.patch("d", {"pan": 0.5})
    assert sorted(json.loads(path.read_text())["streams"]) == ["a", "c", "d"]
    assert "mix settings of 'b' forgotten" in caplog.text


def test_changes_in_a_running_receiver_are_written_together_and_at_its_stop(
    tmp_path: Path,
) -> None:
    """A flood of PATCHes (or a fader dragged) writes the file once per SAVE_AFTER_S, not
    once per change; what is pending is written when the receiver stops (flush)."""
    path = tmp_path / MIX_STATE

    async def main() -> tuple[bool, dict[str, object]]:
        state = MixState(path)
        for k in range(200):
            state.patch("anna", {"gain_db": -(k % 60)})
        written_at_once = path.exists()
        state.patch("bob", {"mute": True})
        state.flush()
        return written_at_once, json.loads(path.read_text())["streams"]

    written_at_once, streams = asyncio.run(main())
    assert not written_at_once
    assert streams == {
        "anna": {"gain_db": -19.0, "mute": False, "solo": False, "pan": 0.0},
        "bob": {"gain_db": 0.0, "mute": True, "solo": False, "pan": 0.0},
    }
