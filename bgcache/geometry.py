"""PXD geometry: the 40 sensors in generator order, VxdID packing and image shapes.

Sensor index i = 0..39 follows (layer, ladder, sensor): layer 1 ladders 1..8, then
layer 2 ladders 1..12, sensors 1..2 each; i = 2*(ladder-1) + (sensor-1), +16 for
layer 2. The packed Belle II VxdID is ``layer<<13 | ladder<<8 | sensor<<5 | segment``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bgcache.errors import GeometryError

#: Number of PXD sensors (images per background event).
N_SENSORS = 40
#: Pixel columns per sensor (u), after the generator's 256 -> 250 crop.
N_U = 250
#: Pixel rows per sensor (v).
N_V = 768
#: Pixels per sensor.
PIXELS_PER_SENSOR = N_U * N_V
#: Shape of one dense background event.
IMAGE_SHAPE = (N_SENSORS, N_U, N_V)
#: Bytes of one dense uint8 event.
DENSE_EVENT_BYTES = N_SENSORS * PIXELS_PER_SENSOR
#: Height of the raw generator output before cropping rows 3..252.
RAW_U = 256
#: First raw row kept by the crop.
CROP_START = 3
#: Ladders per layer.
LADDERS = {1: 8, 2: 12}
#: Sensors per ladder.
SENSORS_PER_LADDER = 2


class Sensor(NamedTuple):
    """One PXD sensor: its index in generator order and its Belle II ids."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    layer: int
    ladder: int
    sensor: int
    vxd_id: int


def pack_vxd_id(layer: int, ladder: int, sensor: int, segment: int = 0) -> int:
    """Pack (layer, ladder, sensor, segment) into a 16-bit Belle II VxdID.

    Example:
        >>> pack_vxd_id(1, 1, 1)
        8480
        >>> pack_vxd_id(2, 12, 2)
        19520
    """
    if not (0 <= layer < 8 and 0 <= ladder < 32 and 0 <= sensor < 8 and 0 <= segment < 32):
        raise GeometryError(
            f"cannot pack VxdID({layer}, {ladder}, {sensor}, {segment}): expected layer 0..7, "
            "ladder 0..31, sensor 0..7, segment 0..31"
        )
    return (layer << 13) | (ladder << 8) | (sensor << 5) | segment


def unpack_vxd_id(vxd_id: int) -> tuple[int, int, int, int]:
    """Unpack a VxdID into (layer, ladder, sensor, segment).

    Example:
        >>> unpack_vxd_id(19520)
        (2, 12, 2, 0)
    """
    if not 0 <= vxd_id < 1 << 16:
        raise GeometryError(f"VxdID {vxd_id} is not a 16-bit value")
    return (vxd_id >> 13) & 0x7, (vxd_id >> 8) & 0x1F, (vxd_id >> 5) & 0x7, vxd_id & 0x1F


def sensor_index(layer: int, ladder: int, sensor: int) -> int:
    """Generator index 0..39 of a PXD sensor.

    Example:
        >>> sensor_index(1, 1, 1), sensor_index(1, 8, 2), sensor_index(2, 1, 1), sensor_index(2, 12, 2)
        (0, 15, 16, 39)
    """
    if layer not in LADDERS:
        raise GeometryError(f"PXD layer must be 1 or 2, got {layer}")
    if not 1 <= ladder <= LADDERS[layer]:
        raise GeometryError(f"PXD layer {layer} has ladders 1..{LADDERS[layer]}, got {ladder}")
    if not 1 <= sensor <= SENSORS_PER_LADDER:
        raise GeometryError(f"PXD ladders have sensors 1..2, got {sensor}")
    return 2 * (ladder - 1) + (sensor - 1) + (16 if layer == 2 else 0)


def _build_sensors() -> tuple[Sensor, ...]:
    out = []
    for layer, nladders in LADDERS.items():
        for ladder in range(1, nladders + 1):
            for sensor in range(1, SENSORS_PER_LADDER + 1):
                index = sensor_index(layer, ladder, sensor)
                out.append(Sensor(index, layer, ladder, sensor, pack_vxd_id(layer, ladder, sensor)))
    assert [s.index for s in out] == list(range(N_SENSORS))
    return tuple(out)


#: The 40 sensors in generator order.
SENSORS: tuple[Sensor, ...] = _build_sensors()
#: VxdID of each sensor index, as a uint16 lookup table.
VXD_IDS: np.ndarray = np.array([s.vxd_id for s in SENSORS], dtype=np.uint16)
#: Layer (1 or 2) of each sensor index.
LAYERS: np.ndarray = np.array([s.layer for s in SENSORS], dtype=np.uint8)


def sensor_from_vxd_id(vxd_id: int) -> Sensor:
    """The sensor with this packed VxdID (segment ignored).

    Example:
        >>> sensor_from_vxd_id(8480).index
        0
    """
    layer, ladder, sensor, _ = unpack_vxd_id(vxd_id)
    return SENSORS[sensor_index(layer, ladder, sensor)]


def vxd_ids_to_indices(vxd_ids: np.ndarray) -> np.ndarray:
    """Map an array of packed VxdIDs (any segment) to sensor indices (uint8).

    Raises:
        GeometryError: if an id is not a PXD sensor.
    """
    ids = np.asarray(vxd_ids).astype(np.int64) & ~0x1F
    lut = np.full(1 << 16, 255, dtype=np.uint8)
    lut[VXD_IDS] = np.arange(N_SENSORS, dtype=np.uint8)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 16):
        raise GeometryError("VxdIDs must be 16-bit values")
    out: np.ndarray = lut[ids]
    if out.size and out.max() == 255:
        bad = int(np.asarray(vxd_ids).ravel()[np.argmax(out.ravel() == 255)])
        raise GeometryError(f"VxdID {bad} is not a PXD sensor (layer 1 or 2)")
    return out
