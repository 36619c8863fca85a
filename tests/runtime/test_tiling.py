"""TileGrid: tiles cover the image, cores partition it, edge tiles are padded never shrunk."""
from __future__ import annotations

import numpy as np
import pytest

from mitotally.runtime.tiling import TileGrid

CASES = [
    ((3704, 4864), 512, 128),
    ((768, 1024), 256, 64),
    ((300, 410), 64, 16),
    ((333, 287), 128, 48),
    ((129, 1000), 128, 0),
    ((513, 512), 512, 100),
    ((200, 260), 128, 127),
]


def _starts(grid: TileGrid, axis: int) -> list[int]:
    return sorted({(t.row, t.col)[axis] for t in grid.tiles})


@pytest.mark.parametrize("shape,tile,overlap", CASES)
def test_tiles_cover_and_cores_partition(shape, tile, overlap):
    grid = TileGrid(shape, tile, overlap)
    covered = np.zeros(shape, np.int32)
    owners = np.zeros(shape, np.int32)
    for t in grid.tiles:
        r0, c0, r1, c1 = grid.window(t)
        covered[r0:r1, c0:c1] += 1
        cr0, cc0, cr1, cc1 = t.core
        assert r0 <= cr0 < cr1 <= r1 and c0 <= cc0 < cc1 <= c1  # a core lies inside its tile
        owners[cr0:cr1, cc0:cc1] += 1
    assert covered.min() >= 1
    assert (owners == 1).all()


@pytest.mark.parametrize("shape,tile,overlap", CASES)
def test_overlap_and_core_margins(shape, tile, overlap):
    """Neighbours overlap by >= `overlap`; a core border is >= overlap/2 px inside the tile on seam sides."""
    grid = TileGrid(shape, tile, overlap)
    for axis in (0, 1):
        starts = _starts(grid, axis)
        assert starts[0] == 0
        if shape[axis] >= tile:
            assert starts[-1] == shape[axis] - tile  # the last tile ends at the border: no padding, no shrinking
        for a, b in zip(starts, starts[1:]):
            assert a + tile - b >= overlap
    for t in grid.tiles:
        r0, c0, r1, c1 = t.core
        if r0 > 0:
            assert r0 - t.row >= overlap // 2
        if c0 > 0:
            assert c0 - t.col >= overlap // 2
        if r1 < shape[0]:
            assert t.row + tile - r1 >= overlap // 2
        if c1 < shape[1]:
            assert t.col + tile - c1 >= overlap // 2


def test_tile_count_is_minimal_for_the_overlap():
    grid = TileGrid((3704, 4864), 512, 128)
    assert len(_starts(grid, 0)) == 10 and len(_starts(grid, 1)) == 13  # ceil((L - 128) / 384)
    assert len(grid.tiles) == 130


def test_edge_tiles_are_not_shrunk_or_padded():
    rng = np.random.default_rng(0)
    image = rng.uniform(1, 2, (300, 410)).astype(np.float32)
    grid = TileGrid(image.shape, 96, 32)
    for t in grid.tiles:
        crop = grid.crop(image, t, fill=-5.0)
        assert crop.shape == (96, 96) and crop.dtype == image.dtype
        assert (crop > 0).all()  # never padded: the image is larger than a tile
        assert np.array_equal(crop, image[t.row : t.row + 96, t.col : t.col + 96])


def test_image_smaller_than_a_tile_gets_one_padded_tile():
    image = np.arange(50 * 70, dtype=np.float32).reshape(50, 70) + 1
    grid = TileGrid(image.shape, 128, 32)
    assert len(grid.tiles) == 1
    (t,) = grid.tiles
    assert (t.row, t.col) == (0, 0) and t.core == (0, 0, 50, 70) and grid.window(t) == (0, 0, 50, 70)
    crop = grid.crop(image, t, fill=-1.0)
    assert crop.shape == (128, 128)
    assert np.array_equal(crop[:50, :70], image)
    assert (crop[50:] == -1).all() and (crop[:, 70:] == -1).all()


def test_image_smaller_than_a_tile_is_mirrored_by_default():
    """GroupNorm sees the whole tile: padding must look like image, not a flat band (see TileGrid.crop)."""
    image = np.arange(50 * 70, dtype=np.float32).reshape(50, 70) + 1
    grid = TileGrid(image.shape, 128, 32)
    (t,) = grid.tiles
    crop = grid.crop(image, t)
    assert crop.shape == (128, 128) and crop.dtype == image.dtype
    assert np.array_equal(crop[:50, :70], image)
    assert np.array_equal(crop[50:100, :70], image[::-1])  # mirrored about the bottom edge
    assert np.array_equal(crop[:50, 70:128], image[:, ::-1][:, :58])  # and about the right edge
    assert np.array_equal(crop[100:, :70], image[:28])  # a pad longer than the image mirrors again
    # a one-pixel-wide image still fills the tile
    thin = grid.crop(image[:, :1], TileGrid((50, 1), 128, 32).tiles[0])
    assert thin.shape == (128, 128) and np.array_equal(thin[:50, 0], image[:, 0]) and (thin[:50] == image[:, :1]).all()


def test_one_axis_smaller_than_a_tile():
    grid = TileGrid((60, 700), 128, 32)
    assert _starts(grid, 0) == [0]
    assert len(_starts(grid, 1)) > 1
    assert all(t.core[0] == 0 and t.core[2] == 60 for t in grid.tiles)
    assert all(grid.window(t)[2] == 60 for t in grid.tiles)


@pytest.mark.parametrize("tile,overlap", [(128, 128), (128, -1), (128, 200)])
def test_invalid_overlap(tile, overlap):
    with pytest.raises(ValueError, match="overlap"):
        TileGrid((500, 500), tile, overlap)


def test_invalid_shape_or_tile():
    with pytest.raises(ValueError):
        TileGrid((0, 500), 128, 32)
    with pytest.raises(ValueError):
        TileGrid((500, 500), 0, 0)
