"""Tests for bgcache.geometry: sensor order, VxdID packing, id -> index mapping, errors."""

from __future__ import annotations

import numpy as np
import pytest

from bgcache import geometry
from bgcache.errors import BgcacheError, GeometryError
from bgcache.geometry import (
    LAYERS,
    N_SENSORS,
    SENSORS,
    VXD_IDS,
    pack_vxd_id,
    sensor_from_vxd_id,
    sensor_index,
    unpack_vxd_id,
    vxd_ids_to_indices,
)


def _expected_order() -> list[tuple[int, int, int]]:
    """(layer, ladder, sensor) in generator order, written out independently of the module."""
    layer1 = [(1, ladder, sensor) for ladder in range(1, 9) for sensor in (1, 2)]
    layer2 = [(2, ladder, sensor) for ladder in range(1, 13) for sensor in (1, 2)]
    return layer1 + layer2


ALL_SENSORS = _expected_order()


def _sensor_id(lls: tuple[int, int, int]) -> str:
    return "L{}.{}.{}".format(*lls)


def test_there_are_40_sensors() -> None:
    assert N_SENSORS == 40
    assert len(SENSORS) == 40
    assert len(ALL_SENSORS) == 40
    assert geometry.IMAGE_SHAPE == (40, 250, 768)
    assert geometry.DENSE_EVENT_BYTES == 40 * 250 * 768


@pytest.mark.parametrize("lls", ALL_SENSORS, ids=_sensor_id)
def test_sensor_index_formula(lls: tuple[int, int, int]) -> None:
    layer, ladder, sensor = lls
    expected = 2 * (ladder - 1) + (sensor - 1) + (16 if layer == 2 else 0)
    assert sensor_index(layer, ladder, sensor) == expected
    assert ALL_SENSORS.index(lls) == expected


def test_sensors_table_is_in_generator_order() -> None:
    assert [(s.layer, s.ladder, s.sensor) for s in SENSORS] == ALL_SENSORS
    assert [s.index for s in SENSORS] == list(range(40))
    assert [s.vxd_id for s in SENSORS] == [
        (la << 13) | (ld << 8) | (se << 5) for la, ld, se in ALL_SENSORS
    ]
    assert VXD_IDS.dtype == np.uint16
    assert VXD_IDS.tolist() == [s.vxd_id for s in SENSORS]
    assert LAYERS.tolist() == [1] * 16 + [2] * 24


@pytest.mark.parametrize(
    ("lls", "expected"),
    [
        ((1, 1, 1), 8480),
        ((2, 12, 2), 19520),
        ((1, 8, 2), (1 << 13) | (8 << 8) | (2 << 5)),
        ((2, 1, 1), (2 << 13) | (1 << 8) | (1 << 5)),
    ],
    ids=["L1.1.1", "L2.12.2", "L1.8.2", "L2.1.1"],
)
def test_pack_vxd_id_examples(lls: tuple[int, int, int], expected: int) -> None:
    assert pack_vxd_id(*lls) == expected
    assert unpack_vxd_id(expected) == (*lls, 0)


def test_pack_vxd_id_with_segment() -> None:
    assert pack_vxd_id(1, 1, 1, 5) == 8480 + 5
    assert unpack_vxd_id(8480 + 31) == (1, 1, 1, 31)


@pytest.mark.parametrize("lls", ALL_SENSORS, ids=_sensor_id)
def test_pack_unpack_round_trip(lls: tuple[int, int, int]) -> None:
    vxd = pack_vxd_id(*lls)
    assert 0 <= vxd < 1 << 16
    assert unpack_vxd_id(vxd) == (*lls, 0)
    sensor = sensor_from_vxd_id(vxd)
    assert (sensor.layer, sensor.ladder, sensor.sensor) == lls
    assert sensor.index == sensor_index(*lls)
    # the segment bits are ignored when looking a sensor up
    assert sensor_from_vxd_id(vxd | 7) == sensor


def test_all_vxd_ids_are_distinct() -> None:
    assert len(set(VXD_IDS.tolist())) == 40


def test_vxd_ids_to_indices_all_sensors() -> None:
    out = vxd_ids_to_indices(VXD_IDS)
    assert out.dtype == np.uint8
    assert out.tolist() == list(range(40))


@pytest.mark.parametrize("segment", [1, 17, 31], ids=lambda s: f"segment{s}")
def test_vxd_ids_to_indices_ignores_segment_bits(segment: int) -> None:
    ids = VXD_IDS.astype(np.int64) | segment
    assert vxd_ids_to_indices(ids).tolist() == list(range(40))


def test_vxd_ids_to_indices_keeps_shape_and_order() -> None:
    ids = np.array([[19520, 8480], [8480 | 3, pack_vxd_id(1, 8, 2)]], dtype=np.uint16)
    assert vxd_ids_to_indices(ids).tolist() == [[39, 0], [0, 15]]
    assert vxd_ids_to_indices(np.zeros(0, np.uint16)).shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [
        0,  # no layer
        pack_vxd_id(3, 1, 1),  # SVD layer
        pack_vxd_id(1, 9, 1),  # layer 1 has 8 ladders
        pack_vxd_id(2, 13, 1),  # layer 2 has 12 ladders
        pack_vxd_id(1, 1, 3),  # 2 sensors per ladder
        pack_vxd_id(1, 0, 1),  # ladders start at 1
    ],
    ids=["zero", "layer3", "L1-ladder9", "L2-ladder13", "sensor3", "ladder0"],
)
def test_vxd_ids_to_indices_rejects_non_pxd_id(bad: int) -> None:
    ids = np.array([8480, bad, 19520])
    with pytest.raises(GeometryError, match=rf"VxdID {bad} is not a PXD sensor"):
        vxd_ids_to_indices(ids)
    with pytest.raises(GeometryError):
        sensor_from_vxd_id(bad)


@pytest.mark.parametrize(
    "bad", [-1, 1 << 16, (1 << 16) + 8480], ids=["negative", "2**16", "17-bit"]
)
def test_vxd_ids_out_of_16_bits(bad: int) -> None:
    with pytest.raises(GeometryError, match="16-bit"):
        vxd_ids_to_indices(np.array([bad]))
    with pytest.raises(GeometryError, match="16-bit"):
        unpack_vxd_id(bad)


@pytest.mark.parametrize(
    ("lls", "match"),
    [
        ((0, 1, 1), "layer must be 1 or 2"),
        ((3, 1, 1), "layer must be 1 or 2"),
        ((1, 0, 1), r"ladders 1\.\.8"),
        ((1, 9, 1), r"ladders 1\.\.8"),
        ((2, 13, 1), r"ladders 1\.\.12"),
        ((1, 1, 0), r"sensors 1\.\.2"),
        ((2, 1, 3), r"sensors 1\.\.2"),
    ],
    ids=["layer0", "layer3", "L1-ladder0", "L1-ladder9", "L2-ladder13", "sensor0", "sensor3"],
)
def test_sensor_index_rejects_bad_ids(lls: tuple[int, int, int], match: str) -> None:
    with pytest.raises(GeometryError, match=match) as info:
        sensor_index(*lls)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BgcacheError)


@pytest.mark.parametrize(
    "args",
    [(8, 1, 1), (1, 32, 1), (1, 1, 8), (1, 1, 1, 32), (-1, 1, 1)],
    ids=["layer8", "ladder32", "sensor8", "segment32", "negative"],
)
def test_pack_vxd_id_rejects_fields_out_of_bits(args: tuple[int, ...]) -> None:
    with pytest.raises(GeometryError, match="cannot pack VxdID") as info:
        pack_vxd_id(*args)
    assert isinstance(info.value, ValueError)
