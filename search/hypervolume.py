"""Hypervolume on (AUROC, log10 MB), the figure the report, the benchmarks and early stopping's cost curve share.

The reference point is AUROC 0.5, 64 MB: the area of the (AUROC up, log-size down) plane that a
set of points dominates and the reference point bounds.
"""

from __future__ import annotations

import math

__all__ = ["REFERENCE_AUROC", "REFERENCE_MB", "hypervolume"]

REFERENCE_AUROC = 0.5
REFERENCE_MB = 64.0


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated by (AUROC, MB) points in the (AUROC up, log10 MB down) plane, to the reference."""
    # Minimisation form: x = -AUROC, y = log10 MB; keep points that beat the reference in both.
    reference = (-REFERENCE_AUROC, math.log10(REFERENCE_MB))
    kept = sorted((-a, math.log10(mb)) for a, mb in points if a > REFERENCE_AUROC and mb < REFERENCE_MB)
    return _sweep(kept, reference)


def _sweep(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """2-D hypervolume of minimisation points: sweep along x, keeping the running minimum of y."""
    area, best_y = 0.0, reference[1]
    for i, (x, y) in enumerate(points):
        best_y = min(best_y, y)
        next_x = points[i + 1][0] if i + 1 < len(points) else reference[0]
        area += (next_x - x) * (reference[1] - best_y)
    return area
