"""CRC-16 as LAME computes it for the Info tag: CRC-16/ARC (polynomial 0x8005, reflected,
start 0), LAME's ``crc16_lookup`` and ``CRC_update_lookup``."""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt


def _crc16_table() -> npt.NDArray[np.uint16]:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ 0xA001, table >> 1)
    return table.astype(np.uint16)


_CRC_TABLE = _crc16_table()
_CRC_TABLE_LIST = [int(v) for v in _CRC_TABLE]


@cache
def _shift_tables(log2_bytes: int) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    """Tables of the linear map "run the CRC over 2**log2_bytes zero bytes", for a state's
    low and high byte: ``state' = low[state & 0xFF] ^ high[state >> 8]``."""
    if log2_bytes == 0:
        # one zero byte: state' = (state >> 8) ^ T[state & 0xFF], and T[0] = 0
        return _CRC_TABLE.copy(), np.arange(256, dtype=np.uint16)
    half_low, half_high = _shift_tables(log2_bytes - 1)
    return _apply(half_low, half_high, half_low), _apply(half_low, half_high, half_high)


def _apply(
    low: npt.NDArray[np.uint16], high: npt.NDArray[np.uint16], state: npt.NDArray[np.uint16]
) -> npt.NDArray[np.uint16]:
    result: npt.NDArray[np.uint16] = low[state & 0xFF] ^ high[state >> 8]
    return result


def crc16(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/ARC of ``data``, continuing from ``crc`` (LAME's ``CRC_update_lookup``).

    The CRC is linear, so long inputs are reduced as a tree with NumPy (a few dozen array
    operations instead of a Python step per byte): each byte's contribution is computed at
    once, then neighbouring blocks are joined by shifting the left one over the right one's
    length.
    """
    n = len(data)
    if n < 512:  # not worth the NumPy set-up
        table = _CRC_TABLE_LIST
        for byte in bytes(data):
            crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
        return crc
    # leading zero bytes leave a zero state at zero, so pad in front to a power of two
    size = 1 << (n - 1).bit_length()
    states = np.zeros(size, dtype=np.uint16)
    states[size - n :] = _CRC_TABLE[np.frombuffer(bytes(data), dtype=np.uint8)]
    level = 0
    while len(states) > 1:
        pairs = states.reshape(-1, 2)
        states = _apply(*_shift_tables(level), pairs[:, 0]) ^ pairs[:, 1]
        level += 1
    result = int(states[0])
    # the state before ``data``, carried over all n bytes of it
    carried = np.array([crc], dtype=np.uint16)
    level = 0
    while n:
        if n & 1:
            carried = _apply(*_shift_tables(level), carried)
        n >>= 1
        level += 1
    return int(carried[0]) ^ result
