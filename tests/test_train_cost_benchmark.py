"""benchmarks/train_cost.py reads the trainer's own epoch rate (nothing is timed here)."""

from __future__ import annotations

import pytest

from benchmarks.train_cost import images_per_second


def test_the_rate_comes_from_the_trainers_epoch_line():
    log = ("2026-12-05 01:34:30,100 __main__ INFO Training L-CAM-Img on 256 images of ...\n"
           "2026-12-05 01:34:46,300 lib.train_lcam INFO L-CAM-Img epoch 1/1: loss 4.2434 ce 0.4441 area 0.7624 "
           "tv 205.2581 keep 0.969 (16.3 images/s)\n"
           "2026-12-05 01:34:46,310 __main__ INFO epoch 1: loss 4.2434 ce 0.4441 area 0.7624 tv 205.2581 keep 0.969\n")
    assert images_per_second(log) == 16.3
    with pytest.raises(ValueError, match="images/s"):
        images_per_second("Training L-CAM-Img on 256 images\n")
