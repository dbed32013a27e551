from __future__ import annotations

import numpy as np
import pytest

from micwire.common.codecs import OpusEncoder, make_decoder, make_encoder
from micwire.common.errors import CodecError, FrameError, ParameterError
from micwire.common.protocol import StreamParams


def tone(n: int, channels: int = 1, hz: float = 440.0, rate: int = 48000) -> np.ndarray:
    t = np.arange(n) / rate
    wave = np.rint(np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
    return np.repeat(wave[:, None], channels, axis=1)


def test_pcm_round_trip_is_exact_and_little_endian() -> None:
    params = StreamParams("pcm", 48000, 2, 10.0)
    frame = np.random.default_rng(1).integers(-32768, 32767, (480, 2), dtype=np.int16)
    payload = make_encoder(params).encode(frame)
    assert payload[:2] == int(frame[0, 0]).to_bytes(2, "little", signed=True)
    assert np.array_equal(make_decoder(params).decode(payload), frame)


def test_pcm_short_last_frame_is_sent_short() -> None:
    params = StreamParams("pcm", 16000, 1, 20.0)
    assert len(make_encoder(params).encode(np.zeros((5, 1), np.int16))) == 10


def test_pcm_decoder_rejects_partial_samples() -> None:
    with pytest.raises(FrameError, match="not whole samples"):
        make_decoder(StreamParams("pcm", 48000, 2, 20.0)).decode(b"\0" * 6)


@pytest.mark.parametrize("frame_ms", [2.5, 5.0, 10.0, 20.0, 40.0, 60.0])
@pytest.mark.parametrize("application", ["voip", "audio", "lowdelay"])
def test_opus_every_frame_size_and_application(frame_ms: float, application: str) -> None:
    params = StreamParams("opus", 48000, 1, frame_ms, 64000)
    encoder = make_encoder(params, application)
    decoder = make_decoder(params)
    n = params.frame_samples
    signal = tone(n * 40)
    out = np.concatenate(
        [decoder.decode(encoder.encode(signal[i : i + n])) for i in range(0, len(signal), n)]
    )
    assert out.shape == signal.shape
    d = encoder.pre_skip
    # after the codec delay the decoded tone lines up with the input
    a, b = out[d:, 0].astype(float), signal[: len(signal) - d, 0].astype(float)
    steady = slice(len(a) // 4, None)
    assert np.corrcoef(a[steady], b[steady])[0, 1] > 0.98


def test_opus_stereo_and_other_rates() -> None:
    params = StreamParams("opus", 16000, 2, 20.0)
    encoder, decoder = make_encoder(params), make_decoder(params)
    out = decoder.decode(encoder.encode(tone(320, 2, rate=16000)))
    assert out.shape == (320, 2)


def test_opus_pads_a_short_frame() -> None:
    params = StreamParams("opus", 48000, 1, 20.0)
    payload = make_encoder(params).encode(tone(100))
    assert make_decoder(params).decode(payload).shape == (960, 1)


def test_opus_fec_settings_are_accepted() -> None:
    encoder = OpusEncoder(StreamParams("opus"), "voip", fec=True, expected_loss_pct=10)
    assert encoder._encoder.inband_fec == 1
    assert encoder._encoder.packet_loss_perc == 10
    assert encoder.encode(tone(960))


def test_opus_decoder_rejects_garbage_and_wrong_durations() -> None:
    params20 = StreamParams("opus", 48000, 1, 20.0)
    decoder = make_decoder(params20)
    with pytest.raises(FrameError, match="undecodable Opus packet"):
        decoder.decode(b"\xff\xff\xff")
    packet60 = make_encoder(StreamParams("opus", 48000, 1, 60.0)).encode(tone(2880))
    with pytest.raises(FrameError, match="holds 2880 samples, the stream's frames hold 960"):
        decoder.decode(packet60)


def test_encoder_rejects_wrong_shapes_and_settings() -> None:
    params = StreamParams("pcm", 48000, 2, 20.0)
    with pytest.raises(CodecError, match=r"int16 frames of shape \(n, 2\)"):
        make_encoder(params).encode(np.zeros((960, 1), np.int16))
    with pytest.raises(CodecError, match="exceeds 960"):
        make_encoder(params).encode(np.zeros((961, 2), np.int16))
    with pytest.raises(CodecError, match="int16"):
        make_encoder(params).encode(np.zeros((960, 2), np.float32))
    with pytest.raises(ParameterError, match="unknown Opus application"):
        make_encoder(StreamParams("opus"), "music")
    with pytest.raises(ParameterError, match="frame duration"):
        make_encoder(StreamParams("pcm", 48000, 1, 3.0))


def test_missing_libopus_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from micwire.common.errors import CodecUnavailableError

    monkeypatch.setitem(sys.modules, "opuslib", None)  # what a failed libopus load looks like
    hint = r"apt-get install libopus0.*or use --codec pcm"
    with pytest.raises(CodecUnavailableError, match=hint):
        make_encoder(StreamParams("opus"))
