"""Scanning IN_DIR: filters, recursion, no symlinks, nothing outside the folder; events and polling wake the daemon."""
import time

import pytest

from mitotally.runtime.watch.sources import ChangeFeed, Filters, network_filesystem, relative_inside, scan


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(root, filters, skip=()):
    return sorted(rel for rel, _ in scan(root, filters, skip))


def test_filters_case_insensitive_and_temp_names_excluded(tmp_path):
    for n in ("a.tif", "B.TIF", "c.png", "d.txt", ".e.tif", "f.tif.part", "g.tmp", "h.JPEG"):
        touch(tmp_path / n)
    assert names(tmp_path, Filters()) == ["B.TIF", "a.tif", "c.png", "h.JPEG"]
    assert names(tmp_path, Filters(include=("*.tif",))) == ["B.TIF", "a.tif"]
    assert names(tmp_path, Filters(exclude=Filters().exclude + ("b*",))) == ["a.tif", "c.png", "h.JPEG"]


def test_recursion_and_excluded_folders(tmp_path):
    touch(tmp_path / "top.tif")
    touch(tmp_path / "day1" / "x.tif")
    touch(tmp_path / "day1" / "deep" / "y.tif")
    touch(tmp_path / "trash" / "z.tif")
    touch(tmp_path / ".hidden" / "w.tif")
    assert names(tmp_path, Filters()) == ["top.tif"]
    assert names(tmp_path, Filters(recursive=True, exclude=(".*", "trash"))) == ["day1/deep/y.tif", "day1/x.tif", "top.tif"]
    assert names(tmp_path, Filters(recursive=True, include=("day1/*.tif",))) == ["day1/deep/y.tif", "day1/x.tif"]


def test_output_folder_inside_input_is_skipped(tmp_path):
    touch(tmp_path / "a.tif")
    touch(tmp_path / "results" / "overlays" / "a.png")
    assert names(tmp_path, Filters(recursive=True), skip=(tmp_path / "results",)) == ["a.tif"]


def test_symlinks_are_never_followed(tmp_path):
    inside, outside = tmp_path / "in", tmp_path / "outside"
    touch(inside / "a.tif")
    touch(outside / "secret.tif")
    (inside / "link.tif").symlink_to(outside / "secret.tif")
    (inside / "linkdir").symlink_to(outside, target_is_directory=True)
    assert names(inside, Filters(recursive=True)) == ["a.tif"]
    assert relative_inside(inside, inside / "a.tif") == "a.tif"
    assert relative_inside(inside, inside / "linkdir" / "secret.tif") is None
    assert relative_inside(inside, outside / "secret.tif") is None
    assert relative_inside(inside, inside) is None


def test_local_tmp_is_not_a_network_filesystem(tmp_path):
    assert network_filesystem(tmp_path) is None


def test_poll_mode_asks_for_full_scans_on_its_interval():
    feed = ChangeFeed(".", recursive=False, poll_s=0.05)
    assert feed.start() == "polling"
    assert feed.wait(10).full_scan  # the first wait always scans
    t0 = time.monotonic()
    ch = feed.wait(10)
    assert ch.full_scan and time.monotonic() - t0 < 5
    feed.stop()


def test_events_wake_the_feed_with_the_changed_path(tmp_path):
    feed = ChangeFeed(tmp_path, recursive=False, rescan_s=3600)
    if feed.start() != "events":
        pytest.skip(f"no file-system events here: {feed.reason}")
    try:
        feed.wait(0)  # consume the initial full scan
        touch(tmp_path / "new.tif")
        seen = set()
        deadline = time.monotonic() + 10
        while str(tmp_path / "new.tif") not in seen and time.monotonic() < deadline:
            ch = feed.wait(1)
            seen |= ch.paths
        assert str(tmp_path / "new.tif") in seen
    finally:
        feed.stop()


def test_observer_that_cannot_start_falls_back_to_polling(tmp_path):
    def broken():
        raise OSError(28, "inotify watch limit reached")

    feed = ChangeFeed(tmp_path, recursive=True, observer_factory=broken)
    assert feed.start() == "polling"
    assert "inotify watch limit" in feed.reason
