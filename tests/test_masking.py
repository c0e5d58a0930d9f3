"""Mask sampling (Table 1f): the reference's random masking, block-wise and grid."""
import random

import pytest
import torch

from mae_core.masking import block_mask, block_masking, grid_masking, random_masking, sample


def test_random_masking_keeps_exactly_the_count_and_restore_inverts_the_shuffle():
    m = random_masking(4, (14, 14), 0.75)
    assert m.ids_keep.shape == (4, 49)
    assert torch.all(m.mask.sum(1) == 196 - 49)
    assert torch.all(torch.gather(m.mask, 1, m.ids_keep) == 0)  # kept patches are marked 0
    ids_shuffle = torch.argsort(m.ids_restore, dim=1)
    assert torch.equal(torch.gather(ids_shuffle, 1, m.ids_restore), torch.arange(196).expand(4, -1))


def test_the_smallest_noise_is_kept_as_in_the_reference():
    noise = torch.rand(2, 16)
    m = random_masking(2, (4, 4), 0.75, noise=noise)
    assert torch.equal(m.ids_keep, torch.argsort(noise, dim=1)[:, :4])


def test_per_sample_seeds_fix_the_mask():
    a = sample('random', 3, (8, 8), 0.75, seeds=[1, 2, 3]).mask
    b = sample('random', 3, (8, 8), 0.75, seeds=[1, 2, 3]).mask
    c = sample('random', 3, (8, 8), 0.75, seeds=[1, 2, 4]).mask
    assert torch.equal(a, b) and torch.equal(a[:2], c[:2]) and not torch.equal(a[2], c[2])


def test_grid_keeps_one_of_every_four_in_the_same_pattern():
    m = grid_masking(2, (4, 6))
    kept = (m.mask[0] == 0).view(4, 6)
    expect = torch.zeros(4, 6, dtype=torch.bool)
    expect[0::2, 0::2] = True
    assert torch.equal(kept, expect) and torch.equal(m.mask[0], m.mask[1])
    with pytest.raises(ValueError, match='0.75'):
        grid_masking(1, (4, 4), 0.5)


def _components(mask):
    """Number of 4-connected components of True cells."""
    seen, count = set(), 0
    for start in zip(*torch.nonzero(mask, as_tuple=True)):
        start = tuple(int(v) for v in start)
        if start in seen:
            continue
        count, stack = count + 1, [start]
        while stack:
            r, c = stack.pop()
            if (r, c) in seen or not (0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]) or not mask[r, c]:
                continue
            seen.add((r, c))
            stack += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
    return count


@pytest.mark.parametrize('ratio', [0.5, 0.75])
def test_block_masks_hit_the_ratio_exactly_with_large_contiguous_blocks(ratio):
    for seed in range(20):
        mask = block_mask((14, 14), int(196 * ratio), random.Random(seed))
        assert int(mask.sum()) == int(196 * ratio)
        # BEiT-style blocks have >= 16 patches, so far fewer pieces than a random mask's
        assert _components(mask) <= int(196 * ratio) // 16 + 1
    m = block_masking(3, (14, 14), ratio, [random.Random(s) for s in range(3)])
    assert torch.all(m.mask.sum(1) == 196 - int(196 * (1 - ratio)))
