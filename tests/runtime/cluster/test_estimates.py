"""The scale-estimate plan: each key's first input leads; the others go once its estimate is known."""
from __future__ import annotations

from pathlib import Path

from mitotally.runtime.cluster.estimates import EstimatePlan, Seed, _KeyOnly, estimate_key, made, plant
from mitotally.runtime.reader import InputItem
from mitotally.runtime.scale_memory import EstimateKey, ScaleMemory
from mitotally.runtime.scale_probe import ScaleEstimate


def key(w: int) -> EstimateKey:
    return EstimateKey(100, w, "uint8", None, "/data", "")


def item(name: str) -> InputItem:
    return InputItem(Path(f"/data/{name}"), name)


def drain(plan: EstimatePlan) -> list[tuple[str, Seed | None]]:
    out = []
    while (nxt := plan.take()) is not None:
        out.append((nxt[0].key, nxt[1]))
    return out


def estimate(nm: float) -> ScaleEstimate:
    return ScaleEstimate(nm, 10.0, {nm: 1.0, 10.0: 0.1}, (10, 10), 4)


def test_leaders_and_keyless_inputs_go_first_the_rest_after_their_leaders_estimate():
    items = [item(n) for n in ("a", "b", "c", "d", "e")]
    plan = EstimatePlan(items, {"a": key(1), "b": key(1), "c": None, "d": key(2), "e": key(2)})
    first = drain(plan)
    assert [k for k, _ in first] == ["a", "c", "d"]
    assert first[0][1] == Seed(key(1)) and first[1][1] is None  # a leads key 1; c has no key
    assert plan.waiting() == 2
    got = Seed(key(1), estimate(5.0), "/data/a")
    plan.finished(items[0], got)
    assert drain(plan) == [("b", got)]
    plan.finished(items[2], None)  # not a leader: changes nothing
    plan.finished(items[3], None)  # d's task was lost without an estimate: e leads key 2 now
    assert drain(plan) == [("e", Seed(key(2)))]
    assert plan.waiting() == 0


def test_a_worker_plants_a_seed_once_and_a_leader_returns_what_it_made():
    class Seg:
        scale_estimates = ScaleMemory()

    seg, planted = Seg(), set()
    seed = Seed(key(1), estimate(5.0), "/data/a")
    plant(seg, seed, planted)
    plant(seg, seed, planted)
    assert len(seg.scale_estimates.made()) == 1 and seg.scale_estimates.recall(key(1)).origin == "/data/a"
    assert made(seg, seed) is None  # a follower makes nothing
    seg.scale_estimates.remember(key(2), estimate(2.5), "/data/d")
    assert made(seg, Seed(key(2))) == Seed(key(2), estimate(2.5), "/data/d")


def test_the_key_is_the_one_the_segmenter_itself_looks_up(tmp_path):
    """`estimate_key` stops `choose_view` at its lookup: no probe runs, and off/non-square give None."""
    import numpy as np

    from mitotally.runtime.image_io import ImageData
    from mitotally.runtime.manifest import Manifest
    from mitotally.runtime.pipeline import RunConfig
    from mitotally.runtime.scale_memory import estimate_key as local_key

    class Seg:
        manifest, scale_estimate, skip_data_bars = Manifest(), "auto", True

    array = np.full((64, 80), 120, np.uint8)
    image = ImageData(tmp_path / "f.tif", array, None)
    assert estimate_key(image, Seg(), RunConfig()) == local_key(tmp_path / "f.tif", array, None, "")
    assert estimate_key(image, Seg(), RunConfig(pixel_size_nm=4.0)).given_nm == 4.0
    Seg.scale_estimate = "off"
    assert estimate_key(image, Seg(), RunConfig()) is None
    assert isinstance(_KeyOnly(), ScaleMemory)
