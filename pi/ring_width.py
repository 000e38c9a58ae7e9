"""The calibrated ring width of a plan (docs/engine.md, "The ring width"): which width
`pi.compile(..., ring_bits="calibrated")` rebuilds a plan at, and the check that its calibrated
values fit the width chosen."""
from __future__ import annotations

from collections.abc import Callable

from protocols.fixed_point import RING_BITS
from protocols.plan import Plan, PlanError
from protocols.two_party.poly import has_poly

STEPS_BELOW_CAP = 16      # narrower rings tried where a capped width does not hold its values


class ValuesTooWide(PlanError):
    """The calibrated values need more than the 64 bits the engine computes in."""


def calibrated_width(full: tuple, build: Callable[[int], tuple], *, max_ring_bits: int, poly_word_bits: int,
                     frac_bits: int, margin_bits: int) -> tuple:
    """(plan, weights) rebuilt at the width the full-ring build `full` needs, by build(width).

    The width is at least every private linear output's scale + 12, so the builder inserts no
    truncation the full ring did not need (no extra ops or rounds). Polynomial sites whose words
    have poly_word_bits output at a lower scale in a narrower ring (protocols.plan.poly_output_shift),
    which lowers what the plan needs: narrowed again until it holds, first trying the widest ring
    where they output at scale f. Under max_ring_bits the builder inserts faithful truncations
    where a scale needs more."""
    plan, weights = full
    need = min(plan.required_ring_bits(), max_ring_bits)
    low = poly_word_bits - 2 * frac_bits
    if need > low and has_poly(plan):
        try:
            trial = build(low)
            if trial[0].required_ring_bits() <= low:
                (plan, weights), need = trial, trial[0].required_ring_bits()
        except PlanError:
            pass
    tries = STEPS_BELOW_CAP
    while need < plan.ring_bits:
        try:
            plan, weights = build(need)
        except PlanError:
            if tries == STEPS_BELOW_CAP:
                raise
            break                       # a step below the cap failed: check_fits names the need
        need = min(plan.required_ring_bits(), max_ring_bits)
        if need == plan.ring_bits < plan.required_ring_bits() and tries:
            # Over a cap: the builder truncates a carried scale only where fewer than 10 bits would
            # be left for the values, which the calibrated bounds may exceed; a narrower ring
            # truncates more and may need less.
            need, tries = need - 1, tries - 1
    check_fits(plan, margin_bits)
    plan.meta["ring"] = "calibrated"
    return plan, weights


def check_fits(plan: Plan, margin_bits: int) -> None:
    """The calibrated values fit the plan's ring, or a PlanError says what to do. Beyond 64 bits
    only the headroom may be missing (margin_bits: the values themselves still fit); more is
    refused, since the gates would wrap on the calibration data itself."""
    need = plan.required_ring_bits(failure_target=None, cap=False)
    if need - margin_bits > RING_BITS:
        raise ValuesTooWide(f"on the calibration data the compiled network's values need a {need - margin_bits}-bit ring, "
                            f"more than the {RING_BITS} bits the engine computes in: its ReLU policy makes them grow "
                            "layer by layer (an untrained relu='poly' network compounds its polynomials); train the "
                            "policy with the model (relu-budget optimize --method autorep) and compile that run")
    need = plan.required_ring_bits(failure_target=None)
    if need > plan.ring_bits:
        raise PlanError(f"the calibrated values need a {need}-bit ring, more than ring_bits={plan.ring_bits}; "
                        "compile with a wider ring_bits (or ring_bits='calibrated')")
