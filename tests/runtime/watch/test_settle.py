"""Settling: a file is ready only after its size and mtime stayed the same for the settle time."""
import os

import pytest

from mitotally.runtime.watch.settle import Settler, file_sha256, signature


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_ready_only_after_quiet_period():
    clock = Clock()
    s = Settler(2.0, clock=clock)
    s.observe("a", (10, 1))
    clock.t = 1.9
    assert s.ready() == []
    assert s.next_deadline() == pytest.approx(2.0)
    clock.t = 2.0
    assert s.ready() == [("a", (10, 1))]
    assert len(s) == 0


def test_any_change_restarts_the_quiet_period():
    clock = Clock()
    s = Settler(2.0, clock=clock)
    s.observe("a", (10, 1))
    clock.t = 1.5
    s.observe("a", (20, 1))  # grew
    clock.t = 3.0
    assert s.ready() == []
    s.observe("a", (20, 2))  # same size, new mtime
    clock.t = 4.9
    assert s.ready() == []
    clock.t = 5.0
    s.observe("a", (20, 2))  # unchanged observation does not restart
    assert s.ready() == [("a", (20, 2))]


def test_zero_settle_is_immediate_and_negative_rejected():
    s = Settler(0.0, clock=Clock())
    s.observe("a", (1, 1))
    assert s.ready() == [("a", (1, 1))]
    with pytest.raises(ValueError):
        Settler(-1)


def test_signature_ignores_symlinks_and_folders(tmp_path):
    f = tmp_path / "a.tif"
    f.write_bytes(b"12345")
    size, mtime = signature(f)
    assert size == 5 and mtime == os.stat(f).st_mtime_ns
    (tmp_path / "link.tif").symlink_to(f)
    assert signature(tmp_path / "link.tif") is None
    assert signature(tmp_path) is None
    assert signature(tmp_path / "missing.tif") is None


def test_file_sha256(tmp_path):
    import hashlib

    f = tmp_path / "a.bin"
    data = os.urandom(3 << 20)
    f.write_bytes(data)
    assert file_sha256(f, chunk=1 << 16) == hashlib.sha256(data).hexdigest()


def _truncations(data: bytes, cuts=(0.05, 0.5, 0.9, 0.999)):
    return [data[: max(1, int(len(data) * c))] for c in cuts]


@pytest.mark.parametrize("kind", ["imagej_stack", "ome_stack", "plain_zlib", "png", "jpeg"])
def test_truncated_images_are_incomplete_and_whole_ones_pass(tmp_path, kind):
    import numpy as np
    import tifffile
    from PIL import Image

    from mitotally.runtime.watch.settle import Incomplete, check_complete

    a = np.random.default_rng(0).integers(0, 255, (3, 96, 96), dtype=np.uint8)
    suffix = ".png" if kind == "png" else ".jpg" if kind == "jpeg" else ".tif"
    whole = tmp_path / (f"whole.ome{suffix}" if kind == "ome_stack" else f"whole{suffix}")
    if kind == "imagej_stack":
        tifffile.imwrite(whole, a, imagej=True)
    elif kind == "ome_stack":
        tifffile.imwrite(whole, a, photometric="minisblack", metadata={"axes": "ZYX"})
        with tifffile.TiffFile(whole) as tif:
            assert tif.is_ome
    elif kind == "plain_zlib":
        tifffile.imwrite(whole, a[0], compression="zlib")
    else:
        Image.fromarray(a[0]).save(whole)
    check_complete(whole)
    for i, part in enumerate(_truncations(whole.read_bytes())):
        cut = tmp_path / f"cut{i}{suffix}"
        cut.write_bytes(part)
        with pytest.raises(Incomplete):
            check_complete(cut)
