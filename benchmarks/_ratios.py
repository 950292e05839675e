"""How every benchmark prints a ratio against its baseline."""

import math


def ratio_text(ratio: float) -> str:
    """Two decimals, rounded down (with slack for float error), so that a ratio just short of
    a target never prints as the target."""
    return f"{math.floor(ratio * 100 + 1e-9) / 100:.2f}x"
