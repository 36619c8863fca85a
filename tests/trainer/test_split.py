"""Train / gap / validation / test blocks by name: the test block is never loaded for training or validation."""
from pathlib import Path

import numpy as np
import pytest

from mitotally.trainer.importers.types import LabelledImage
from mitotally.trainer.split import split_by_block, validation_only


def _items(n: int) -> list[LabelledImage]:
    z = np.zeros((4, 4), np.int32)
    return [LabelledImage(f"s{i:03d}", Path(f"s{i:03d}.png"), z, z) for i in reversed(range(1, n + 1))]  # unsorted on purpose


def _names(items):
    return [int(it.name[1:]) for it in items]


def test_blocks_from_the_end_test_then_validation_then_gap_then_training():
    # release 3's Lucchi split: train 1-100 | gap 101-120 | validation 121-140 | test 141-165
    train, val = split_by_block(_items(165), val_last=20, val_fraction=0.1, gap=20, test_last=25)
    assert _names(train) == list(range(1, 101))
    assert _names(val) == list(range(121, 141))


def test_without_gap_or_test_the_last_images_validate():
    train, val = split_by_block(_items(10), val_last=None, val_fraction=0.2)
    assert _names(train) == list(range(1, 9)) and _names(val) == [9, 10]


def test_too_few_images_for_validation_gap_and_training_is_an_error():
    with pytest.raises(ValueError, match="cannot hold a validation block of 3, a gap of 5"):
        split_by_block(_items(10), val_last=3, val_fraction=0.1, gap=5, test_last=2)


def test_a_validation_only_folder_keeps_all_but_its_test_block():
    assert _names(validation_only(_items(10), test_last=5)) == [1, 2, 3, 4, 5]
    assert _names(validation_only(_items(3))) == [1, 2, 3]
