"""The memory budget for an image's rescaled copy: refused in one line before it is made."""
from __future__ import annotations

import pytest

from mitotally.runtime.image_io import ImageReadError
from mitotally.runtime.scale_limit import (BYTES_PER_SCALED_PIXEL, MAX_SCALED_PIXELS, ScaledImageTooLarge,
                                           check_scaled_size, scaled_pixel_budget)

PLENTY = 10**15  # bytes: the constant sets the budget


def test_budget_is_the_constant_or_the_available_memory():
    assert scaled_pixel_budget(PLENTY) == (MAX_SCALED_PIXELS, "MAX_SCALED_PIXELS")
    budget, why = scaled_pixel_budget(12 * 10**9)
    assert budget == 12 * 10**9 // BYTES_PER_SCALED_PIXEL and "12 GB of memory available" in why


def test_a_frame_at_a_sane_scale_passes():
    check_scaled_size((3704, 4864), 0.5, "5 nm (imagej)", 10.0, PLENTY)
    check_scaled_size((20000, 20000), (0.8, 0.4), "4 x 8 nm (imagej)", 10.0, PLENTY)


def test_72_dpi_in_cm_would_need_billions_of_pixels_and_is_refused():
    with pytest.raises(ScaledImageTooLarge) as e:
        check_scaled_size((768, 1024), 352777.8 / 10.0, "352778 nm (--pixel-size)", 10.0, PLENTY)
    text = str(e.value)
    assert isinstance(e.value, ImageReadError) and "\n" not in text
    assert text.startswith("refused: at 352778 nm (--pixel-size) per pixel this 1024x768 px image would be 36124447x27093335 px")
    assert "MAX_SCALED_PIXELS" in text and "--pixel-size" in text


def test_the_limit_follows_available_memory():
    check_scaled_size((1000, 1000), 10.0, "100 nm (imagej)", 10.0, PLENTY)  # 1e8 px
    with pytest.raises(ScaledImageTooLarge, match="GB of memory available"):
        check_scaled_size((1000, 1000), 10.0, "100 nm (imagej)", 10.0, 10**8)  # 100 MB: 8.3e6 px
