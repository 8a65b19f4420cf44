"""Class statistics: point counts, Eq. 19 CE weights, Eq. 5 focal α (both directions), long-tail split."""
from __future__ import annotations

import math

import pytest
import torch

from training.class_stats import (class_balanced_alpha, class_counts, class_weights_from_counts,
                                  long_tail_split)


def test_class_counts_skip_ignore_and_check_range():
    labels = torch.tensor([0, 2, 2, -1, 1, 2, -1])
    assert class_counts(labels, 4).tolist() == [1, 1, 3, 0]
    with pytest.raises(ValueError, match='outside'):
        class_counts(torch.tensor([0, 4]), 4)


def test_weights_follow_the_cube_root_formula_on_a_hand_histogram():
    # f = (100, 10, 1) / 111; w_c = (max f / f_c)^(1/3) = (1, 10^(1/3), 100^(1/3)).
    w = class_weights_from_counts([100, 10, 1])
    torch.testing.assert_close(w, torch.tensor([1.0, 10 ** (1 / 3), 100 ** (1 / 3)]))
    assert class_weights_from_counts([100, 10, 1], power=1.0).tolist() == pytest.approx([1.0, 10.0, 100.0])


def test_zero_count_class_gets_the_largest_weight_and_empty_histograms_fail():
    w = class_weights_from_counts([8, 0, 1])
    assert w.tolist() == pytest.approx([1.0, 2.0, 2.0])
    with pytest.raises(ValueError, match='all zero'):
        class_weights_from_counts([0, 0])
    with pytest.raises(ValueError, match='non-negative'):
        class_weights_from_counts([3, -1])


def test_alpha_paper_direction_grows_with_frequency_and_inverse_shrinks():
    paper = class_balanced_alpha([100, 10])
    # log 100 = 2 log 10: α = (2/3, 1/3) as printed in Eq. 5.
    assert paper.tolist() == pytest.approx([2 / 3, 1 / 3])
    inverse = class_balanced_alpha([100, 10], direction='inverse')
    # 1/log: (1/2, 1) / (3/2) -> (1/3, 2/3).
    assert inverse.tolist() == pytest.approx([1 / 3, 2 / 3])
    assert float(paper.sum()) == pytest.approx(1.0) and float(inverse.sum()) == pytest.approx(1.0)
    # Counts below 2 are raised to 2 (log stays positive).
    assert class_balanced_alpha([1, 0, 4]).tolist() == pytest.approx(
        [math.log(2) / (2 * math.log(2) + math.log(4))] * 2 + [math.log(4) / (2 * math.log(2) + math.log(4))])
    with pytest.raises(ValueError, match='direction'):
        class_balanced_alpha([2, 3], direction='up')


def test_long_tail_split_200_and_scaled():
    counts = torch.arange(200, 0, -1)            # class 0 most frequent
    split = long_tail_split(counts)
    assert split['head'].tolist() == list(range(66))
    assert split['common'].tolist() == list(range(66, 134))
    assert split['tail'].tolist() == list(range(134, 200))
    small = long_tail_split([5, 50, 1, 20, 7, 3, 9, 100, 2, 30])   # 10 classes: 3 / 4 / 3
    assert small['head'].tolist() == [7, 1, 9]
    assert small['common'].tolist() == [3, 6, 4, 0]
    assert small['tail'].tolist() == [5, 8, 2]
