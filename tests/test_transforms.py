import torch

from msde_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PairedAugment

CPU = torch.device("cpu")


def _batch(n=8, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_both_views_get_the_same_draw():
    x = _batch()
    for kind in ("paper", "flip"):
        nm, m = PairedAugment(kind)(x, x.clone(), torch.Generator().manual_seed(1), CPU)
        assert torch.equal(nm, m)


def test_seeded_and_random():
    x, y = _batch(), _batch(seed=1)
    aug = PairedAugment("paper")
    a = aug(x, y, torch.Generator().manual_seed(3), CPU)
    b = aug(x, y, torch.Generator().manual_seed(3), CPU)
    c = aug(x, y, torch.Generator().manual_seed(4), CPU)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    plain = aug.eval(x, CPU)
    changed = [(a[0][i] - plain[i]).abs().max() > 1e-4 for i in range(len(x))]
    assert 0 < sum(changed) <= len(x)


def test_flip_only_flips():
    x = _batch(16)
    nm, _ = PairedAugment("flip")(x, x, torch.Generator().manual_seed(0), CPU)
    plain = PairedAugment("none").eval(x, CPU)
    flipped = 0
    for i in range(16):
        if torch.allclose(nm[i], plain[i]):
            continue
        assert torch.allclose(nm[i], plain[i].flip(2))
        flipped += 1
    assert 0 < flipped < 16


def test_none_is_normalisation_only():
    x = _batch()
    nm, m = PairedAugment("none")(x, x, torch.Generator(), CPU)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(nm, (x.float() / 255 - mean) / std)
