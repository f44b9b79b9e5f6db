"""Running statistics of generated events, compared with the Geant4 reference figures.

Used by ``bgcache generate`` to print its summary. Layer 1 is sensors 0..15, layer 2 is
sensors 16..39 (DESIGN 1); every sensor has the same number of pixels, so a layer's
occupancy is the mean of its sensors' occupancies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bgcache.geometry import N_SENSORS, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent

#: Sensor index ranges of the two PXD layers.
LAYERS: dict[str, slice] = {"layer1": slice(0, 16), "layer2": slice(16, N_SENSORS)}


class EventSummary:
    """Accumulates hits per event, hits per sensor and total charge.

    Example:
        >>> s = EventSummary()
        >>> s.add(SparseEvent([0, 20], [1, 1], [5, 6], [20, 30]))
        >>> s.n_events, s.mean_charge()
        (1, 25.0)
    """

    def __init__(self) -> None:
        self.hits_per_event: list[int] = []
        self.hits_per_sensor = np.zeros(N_SENSORS, dtype=np.int64)
        self.charge_sum = 0

    @property
    def n_events(self) -> int:
        """Events added so far."""
        return len(self.hits_per_event)

    def add(self, event: SparseEvent) -> None:
        """Add one event's hits."""
        self.hits_per_event.append(event.n_hits)
        self.hits_per_sensor += np.bincount(event.sensor, minlength=N_SENSORS)
        self.charge_sum += int(event.charge.sum(dtype=np.int64))

    def occupancy_per_sensor(self) -> np.ndarray:
        """Mean fraction of fired pixels per sensor (40 floats)."""
        return self.hits_per_sensor / (max(self.n_events, 1) * PIXELS_PER_SENSOR)

    def mean_charge(self) -> float:
        """Mean charge (ADU) of fired pixels (0 if there are none)."""
        total = int(self.hits_per_sensor.sum())
        return self.charge_sum / total if total else 0.0

    def to_dict(self, reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Hits per event, occupancy per layer and overall, mean charge; with the reference.

        Args:
            reference: Geant4 figures with ``occupancy_per_sensor`` and
                ``mean_charge_per_sensor`` (40 values each), or None.
        """
        hits = np.asarray(self.hits_per_event, dtype=np.float64)
        occ = self.occupancy_per_sensor()
        ref_occ = ref_charge = None
        if reference is not None:
            ref_occ = np.asarray(reference["occupancy_per_sensor"], dtype=np.float64)
            per_sensor_charge = np.asarray(reference["mean_charge_per_sensor"], dtype=np.float64)
            ref_charge = float((ref_occ * per_sensor_charge).sum() / ref_occ.sum())
        occupancy: dict[str, dict[str, float | None]] = {}
        for name, sl in (*LAYERS.items(), ("overall", slice(0, N_SENSORS))):
            occupancy[name] = {
                "measured": float(occ[sl].mean()),
                "reference": float(ref_occ[sl].mean()) if ref_occ is not None else None,
            }
        return {
            "hits_per_event": {
                "mean": float(hits.mean()) if hits.size else 0.0,
                "std": float(hits.std()) if hits.size else 0.0,
                "min": int(hits.min()) if hits.size else 0,
                "max": int(hits.max()) if hits.size else 0,
            },
            "occupancy": occupancy,
            "mean_charge": {"measured": self.mean_charge(), "reference": ref_charge},
        }
