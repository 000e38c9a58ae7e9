"""Thresholds for the statistical tests: each family of checks at a stated false-alarm rate.

A test file that makes many checks of observed counts against an analytic law would, at a fixed
z per check, fail correct code a few times in a thousand runs (4 sigma on ~150 checks: ~1 %).
Bonferroni: with `count` checks in the family, each two-sided check uses z = Φ⁻¹(1 − α / 2count),
so the family fails a correct implementation with probability at most α.
"""
from __future__ import annotations

FAMILY_ALPHA = 1e-6     # the false-alarm rate of one family of checks (one test file's law)


def family_z(count: int, alpha: float = FAMILY_ALPHA) -> float:
    """Two-sided z threshold for `count` simultaneous checks with family false-alarm rate alpha."""
    from scipy.stats import norm   # scipy comes with scikit-learn; only the statistical tests need it
    return float(norm.isf(alpha / (2 * count)))
