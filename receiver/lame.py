"""LAME as the MP3 writer (micwire.receiver.mp3) runs it: its delay, the quality and
bitrates asked of it and why, its cap at 8-12 kHz, and the encoder made with them.

LAME 3.100 is linked into the ``lameenc`` wheel; bench/mp3_encoders.py measures the
settings chosen here.
"""

from __future__ import annotations

from typing import Any

import lameenc

from ..common.errors import AudioFormatError
from ..common.mp3 import rate_bits

#: LAME's own delay before the first input sample (LAME encoder.h: ``ENCDELAY``), the same
#: at every rate and bitrate.
LAME_DELAY = 576
#: LAME's ``-q``, 0 (slowest) .. 9 (fastest). 5 keeps LAME's noise shaping (quantisation
#: noise kept under the signal band by band), which 7 drops, and skips the costlier Huffman
#: and shaping searches of 3 (LAME's default) and 2. bench/mp3_encoders.py, 64 kbit/s
#: 48 kHz mono: 0.85 % of a core, against 1.1 % (q3), 1.7 % (q2), 0.45 % (q7) and 3.6 % for
#: libsndfile's MP3 today; q2, q3 and q5 leave the same median signal-to-noise per band,
#: q7 3-4 dB less. LAME 3.100 encodes 6 exactly like 5.
DEFAULT_QUALITY = 5
#: kbit/s for one channel (stereo gets twice as much): about 1.3 bits per sample at
#: 32-48 kHz, more per sample at the low rates, where each sample carries more of what is
#: heard. All hold the Info tag (:func:`micwire.common.mp3.min_tagged_bitrate_kbps`).
DEFAULT_BITRATES_KBPS = {
    8000: 24,
    11025: 32,
    12000: 32,
    16000: 32,
    22050: 48,
    24000: 48,
    32000: 64,
    44100: 64,
    48000: 64,
}
#: LAME caps MPEG-2.5 (8-12 kHz) at 64 kbit/s, though the header could say up to 160: it
#: would quietly write 64 kbit/s frames.
_LAME_MAX_KBPS_MPEG25 = 64


def default_bitrate_kbps(rate_hz: int, channels: int) -> int:
    rate_bits(rate_hz)  # refuses a rate MP3 cannot hold, saying which it can
    return DEFAULT_BITRATES_KBPS[rate_hz] * channels


def check_bitrate(rate_hz: int, bitrate_kbps: int) -> None:
    """Refuse a bitrate LAME would not write at this rate (a header could say it)."""
    if rate_hz < 16000 and bitrate_kbps > _LAME_MAX_KBPS_MPEG25:
        raise AudioFormatError(
            f"LAME encodes {rate_hz} Hz MP3 at {_LAME_MAX_KBPS_MPEG25} kbit/s at most,"
            f" not {bitrate_kbps}"
        )


def make_encoder(rate_hz: int, channels: int, bitrate_kbps: int, quality: int) -> Any:
    lame = lameenc.Encoder()
    lame.set_channels(channels)
    lame.set_in_sample_rate(rate_hz)
    # or LAME picks a lower output rate for low bitrates, resampling and delaying
    lame.set_out_sample_rate(rate_hz)
    lame.set_bit_rate(bitrate_kbps)
    lame.set_quality(quality)
    return lame
