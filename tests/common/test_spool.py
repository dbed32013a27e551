"""The sender's spool: what it holds is bounded in samples, whatever the block size; and its
ledger of lost spans, each sample counted once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from micwire.common.framing import Block
from micwire.common.spool import HOLD_MAX_S, Losses, Spool


def blocks(n: int, size: int, start: int = 0) -> list[Block]:
    return [
        Block(
            start + k * size,
            np.full((size, 1), k % 1000, np.int16),
            100.0 + (start + k * size) / 1000,
        )
        for k in range(n)
    ]


@pytest.mark.parametrize("size", [1, 64, 256, 960, 5000])
def test_capacity_is_time_whatever_the_block_size(size: int) -> None:
    """Two seconds at 1 kHz hold 2000 samples, with 64-sample device blocks as with 5000."""
    spool = Spool(2000, 1000)
    for block in blocks(40_000 // size, size):
        spool.append(block)
    assert len(spool) == 2000
    assert spool.end - spool.start == 2000
    assert sum(len(b.samples) for b in spool.read(0)) == 2000


def test_a_hold_keeps_its_audio_past_the_capacity_for_a_while_only() -> None:
    """What a hello offered stays while the handshake lasts; released, the spool holds its
    capacity again; and a hold nobody releases costs at most HOLD_MAX_S more."""
    spool = Spool(2000, 1000)
    for block in blocks(20, 100):
        spool.append(block)
    spool.hold(spool.start)  # 0: the two seconds held
    for block in blocks(10, 100, start=2000):
        spool.append(block)
    assert (spool.start, spool.end) == (0, 3000)
    assert sum(len(b.samples) for b in spool.read(0)) == 3000
    spool.hold(500)  # the receiver starts there: what is before it may go
    assert spool.start == 500
    spool.hold(None)
    assert (spool.start, len(spool)) == (1000, 2000)
    spool.hold(spool.start)
    for block in blocks(400, 100, start=3000):
        spool.append(block)
    assert len(spool) == 2000 + int(HOLD_MAX_S * 1000) and spool.end == 43_000


def test_read_from_any_position_cuts_blocks_exactly() -> None:
    spool = Spool(10_000, 1000)
    for block in blocks(10, 256):
        spool.append(block)
    got = spool.read(300)
    assert got[0].position == 300 and got[0].capture_time == pytest.approx(100.3)
    assert np.concatenate([b.samples for b in got]).shape == (2560 - 300, 1)
    assert [b.position for b in spool.read(2559)] == [2559]
    assert spool.read(2560) == []
    limited = spool.read(0, max_samples=300)
    assert sum(len(b.samples) for b in limited) == 300


def test_a_read_anywhere_starts_exactly_there_from_either_end() -> None:
    # a live connection reads near the newest end, one catching up near the oldest: both
    # find the same audio (gaps between blocks stay gaps)
    spool = Spool(100_000, 1000)
    position, held = 0, {}
    for k, block in enumerate(blocks(40, 100)):
        position += 37 if k % 7 == 3 else 0  # a capture gap now and then
        spool.append(Block(position, block.samples, block.capture_time))
        held.update((position + i, int(v)) for i, v in enumerate(block.samples[:, 0]))
        position += len(block.samples)
    for start in range(0, spool.end + 1, 13):
        got = spool.read(start)
        samples = {b.position + i: int(v) for b in got for i, v in enumerate(b.samples[:, 0])}
        assert samples == {p: v for p, v in held.items() if p >= start}


def test_what_was_evicted_is_simply_not_there() -> None:
    spool = Spool(1000, 1000)
    for block in blocks(10, 256):
        spool.append(block)
    assert spool.start == 2560 - 1000
    first = spool.read(0)[0]
    assert first.position == spool.start  # the reader sees the loss and counts it


def test_capture_gaps_stay_gaps() -> None:
    spool = Spool(10_000, 1000)
    spool.append(Block(0, np.ones((100, 1), np.int16), 0.0))
    spool.append(Block(500, np.ones((100, 1), np.int16), 0.5))  # 400 samples lost in capture
    assert [b.position for b in spool.read(0)] == [0, 500]
    assert [b.position for b in spool.read(150)] == [500]
    assert spool.end == 600 and len(spool) == 200


def test_order_is_enforced_and_empty_blocks_ignored() -> None:
    spool = Spool(100, 1000)
    spool.append(Block(0, np.zeros((10, 1), np.int16), 0.0))
    spool.append(Block(10, np.zeros((0, 1), np.int16), 0.0))
    with pytest.raises(ValueError, match="goes back"):
        spool.append(Block(5, np.zeros((10, 1), np.int16), 0.0))
    with pytest.raises(ValueError):
        Spool(0, 1000)
    assert not spool.closed
    spool.close()
    assert spool.closed


def test_a_span_found_missing_twice_is_counted_once() -> None:
    losses = Losses()
    assert losses.add(100, 200) == 100  # a connection skipped what the spool dropped
    assert losses.add(300, 350) == 50
    # the link broke before the receiver got past either: the next connection resumes
    # from 50 and finds everything up to 400 gone
    assert losses.add(50, 400) == 350 - 150
    assert losses.total == 350
    assert losses.add(60, 390) == 0 and losses.add(400, 400) == 0 and losses.add(5, 1) == 0
    assert losses.add(400, 410) == 10  # touching: only the new part
    assert losses.total == 360


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 60)), max_size=30))
def test_the_count_is_the_size_of_the_union(spans: list[tuple[int, int]]) -> None:
    losses, union = Losses(), set()
    for start, length in spans:
        added = losses.add(start, start + length)
        assert added == len(set(range(start, start + length)) - union)
        union |= set(range(start, start + length))
    assert losses.total == len(union)


def test_spans_the_receiver_has_passed_are_forgotten() -> None:
    losses = Losses()
    losses.add(0, 10)
    losses.add(20, 30)
    losses.forget_before(10)
    assert losses.add(0, 10) == 10  # forgotten (never asked for again in practice)
    assert losses.add(20, 30) == 0
