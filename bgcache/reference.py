"""The Geant4 reference statistics of PXD beam background, as packaged with bgcache.

A leaf module (numpy only). ``bgcache/data/pxd_reference.json`` holds the figures (from
IEA-GAN's evaluation results, MIT License, (c) 2022 Hosein Hashemi): per-sensor occupancy
and mean charge, the charge spectrum over all pixels and the per-image occupancy
histogram. The synthetic generator (:mod:`bgcache.models.synthetic`) draws events that
follow them; :mod:`bgcache.stats` compares pools with them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

_REFERENCE_ARRAYS = (
    "occupancy_per_sensor",
    "mean_charge_per_sensor",
    "charge_histogram",
    "charge_bin_edges",
    "occupancy_histogram",
    "occupancy_bin_edges",
)


@cache
def _reference() -> dict[str, Any]:
    text = resources.files("bgcache").joinpath("data/pxd_reference.json").read_text("utf-8")
    raw = json.loads(text)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _REFERENCE_ARRAYS:
            arr = np.asarray(value, dtype=np.float64)
            arr.setflags(write=False)
            out[key] = arr
        else:
            out[key] = value
    return out


def load_reference() -> dict[str, Any]:
    """The packaged Geant4 reference statistics of PXD beam background.

    Arrays are read-only float64: ``occupancy_per_sensor`` and ``mean_charge_per_sensor``
    (40 values in sensor-index order), ``charge_histogram`` (251 counts over all pixels)
    with ``charge_bin_edges`` (252; bin 0 is [-1, 1) and holds the zeros, bin 1 is [1, 7)
    and is empty, then one bin per ADU 7..255), ``occupancy_histogram`` with
    ``occupancy_bin_edges`` (per-image occupancy). Strings: ``description``, ``source``,
    ``license``, ``sensor_order``; ``fields`` describes each figure.

    Returns:
        A new dict on each call (the arrays are shared and read-only).

    Example:
        >>> ref = load_reference()
        >>> ref["occupancy_per_sensor"].shape, ref["charge_bin_edges"].shape
        ((40,), (252,))
        >>> "IEA-GAN" in ref["source"]
        True
    """
    return dict(_reference())


__all__ = ["load_reference"]
