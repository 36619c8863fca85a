"""Intensity normalisation: percentiles to [0, 1], and inverted contrast read as the negative it is."""
from __future__ import annotations

import numpy as np
import pytest

from mitotally.runtime.manifest import Manifest
from mitotally.runtime.normalize import Normalization, normalize, percentile_limits
from mitotally.runtime.prepare import prepare


def _frame(dtype=np.uint8, shape=(300, 420), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    img = rng.normal(0.55, 0.12, shape).clip(0, 1) * top
    img[40:90, 60:150] *= 0.3  # a dark blob, so the histogram is not symmetric
    return img.astype(dtype)


def test_percentiles_map_to_zero_and_one():
    img = _frame()
    out = normalize(img, Normalization())
    assert out.dtype == np.float32
    assert np.mean(out <= 0) == pytest.approx(0.01, abs=0.005)
    assert np.mean(out >= 1) == pytest.approx(0.002, abs=0.002)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_an_inverted_copy_read_as_inverted_gives_the_original_numbers(dtype):
    img = _frame(dtype)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    negative = (top - img.astype(np.float64)).astype(dtype)
    plain, inv = Normalization(), Normalization().inverted()
    np.testing.assert_allclose(normalize(negative, inv), normalize(img, plain), atol=1e-5)
    # read as normal, the negative is what the model never saw: bright where the original was dark
    assert np.corrcoef(normalize(negative, plain).ravel(), normalize(img, plain).ravel())[0, 1] < -0.99


def test_inverted_limits_put_the_bright_end_first():
    img = _frame()
    lo, hi = percentile_limits(img, Normalization())
    ilo, ihi = percentile_limits(img, Normalization().inverted())
    assert lo < hi and ilo > ihi
    assert ilo == pytest.approx(np.percentile(img, 99.0), abs=1) and ihi == pytest.approx(np.percentile(img, 0.2), abs=1)


@pytest.mark.parametrize("factor", [0.37, 0.5, 1.0, 1.5])
def test_prepare_in_strips_reads_the_negative_as_the_original(factor):
    img = _frame(np.uint16, (500, 380))
    negative = np.iinfo(np.uint16).max - img
    inv = Normalization().inverted()
    np.testing.assert_allclose(prepare(negative, inv, factor, block_rows=7), prepare(img, Normalization(), factor), atol=1e-5)


def test_manifests_of_models_that_never_invert_are_unchanged():
    assert "invert" not in Normalization().to_dict()
    assert Normalization.from_dict(Normalization().inverted().to_dict()) == Normalization(invert=True)
    m = Manifest(normalization=Normalization(invert=True))
    assert Manifest.from_dict(m.to_dict()).normalization.invert is True
    with pytest.raises(ValueError, match="unknown normalization keys"):
        Normalization.from_dict({"low": 1, "flip": True})
