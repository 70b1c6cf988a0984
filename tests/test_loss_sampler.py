from __future__ import annotations

import numpy as np
import pytest
import torch

from aestetik._model._loss import aestetik_loss, triplet_loss
from aestetik._model._sampler import TripletSampler
from aestetik._model._weights import calibrate_weights


def _hand_triplet(a, p, n):
    total, count = 0.0, 0
    for i in range(a.shape[0]):
        for s in range(p.shape[1]):
            dp = np.sqrt(((a[i] - p[i, s] + 1e-6) ** 2).sum())
            dn = np.sqrt(((a[i] - n[i, s] + 1e-6) ** 2).sum())
            total += max(dp - dn + 1.0, 0.0)
            count += 1
    return total / count


def test_triplet_loss_matches_hand_computation():
    rng = np.random.default_rng(0)
    a, p, n = rng.normal(size=(5, 3)), rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 4, 3))
    got = triplet_loss(*(torch.tensor(v, dtype=torch.float64) for v in (a, p, n)))
    assert got.item() == pytest.approx(_hand_triplet(a, p, n), rel=1e-9)


def test_total_loss_matches_formula():
    rng = np.random.default_rng(1)
    x = torch.rand(6, 5, 3, 3, dtype=torch.float64)
    rec = torch.rand(6, 5, 3, 3, dtype=torch.float64)
    z = torch.randn(6, 4, dtype=torch.float64)
    pt = (torch.randn(6, 2, 4, dtype=torch.float64), torch.randn(6, 2, 4, dtype=torch.float64))
    pm = (torch.randn(6, 3, 4, dtype=torch.float64), torch.randn(6, 3, 4, dtype=torch.float64))
    out = aestetik_loss(
        x,
        rec,
        z,
        pt,
        pm,
        n_transcriptomics=2,
        transcriptomics_weight=1.0,
        morphology_weight=2.0,
        rec_alpha=0.5,
        triplet_alpha=3.0,
    )
    l1_t = np.abs(x[:, :2].numpy() - rec[:, :2].numpy()).mean()
    l1_m = np.abs(x[:, 2:].numpy() - rec[:, 2:].numpy()).mean()
    tr_t = _hand_triplet(z.numpy(), pt[0].numpy(), pt[1].numpy())
    tr_m = _hand_triplet(z.numpy(), pm[0].numpy(), pm[1].numpy())
    assert out.reconstruction_transcriptomics.item() == pytest.approx(l1_t)
    assert out.reconstruction_morphology.item() == pytest.approx(l1_m)
    assert out.triplet_transcriptomics.item() == pytest.approx(tr_t)
    assert out.triplet_morphology.item() == pytest.approx(tr_m)
    assert out.loss.item() == pytest.approx(1.0 * (0.5 * l1_t + 3.0 * tr_t) + 2.0 * (0.5 * l1_m + 3.0 * tr_m))
    del rng


def test_zero_weight_modality_contributes_nothing():
    x = torch.rand(4, 3, 3, 3)
    z = torch.randn(4, 2)
    pm = (torch.randn(4, 1, 2), torch.randn(4, 1, 2))
    out = aestetik_loss(
        x, torch.rand_like(x), z, None, pm, n_transcriptomics=2, transcriptomics_weight=0.0, morphology_weight=3.0
    )
    assert out.reconstruction_transcriptomics.item() == 0
    assert out.triplet_transcriptomics.item() == 0
    assert out.loss.item() == pytest.approx(3.0 * (out.reconstruction_morphology + out.triplet_morphology).item())


def test_weight_calibration():
    assert calibrate_weights(1.0, 3.0, n_transcriptomics_clusters=7, n_morphology_clusters=7) == (2.0, 1.0)
    assert calibrate_weights(1.0, 3.0, n_transcriptomics_clusters=7, n_morphology_clusters=1) == (2.0, 0.0)
    assert calibrate_weights(1.0, 3.0, n_transcriptomics_clusters=1, n_morphology_clusters=5) == (0.0, 1.0)
    assert calibrate_weights(0.0, 3.0, n_transcriptomics_clusters=7, n_morphology_clusters=0) == (3.0, 0.0)


@pytest.mark.parametrize("n_repeats", [1, 3])
def test_multi_triplet_sampler(n_repeats):
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c", "d"], size=500, p=[0.5, 0.3, 0.15, 0.05])
    codes = np.unique(labels, return_inverse=True)[1]
    sampler = TripletSampler(labels, n_repeats=n_repeats)
    assert sampler.n_clusters == 4
    assert sampler.n_partners == 3 * n_repeats
    torch.manual_seed(0)
    anchors = torch.arange(500)
    pos, neg = sampler.sample(anchors)
    assert pos.shape == neg.shape == (500, 3 * n_repeats)
    pos, neg = pos.numpy(), neg.numpy()
    assert np.all(codes[pos] == codes[:, None])  # positives share the anchor's label
    for i in range(500):
        expected = np.repeat([c for c in range(4) if c != codes[i]], n_repeats)
        np.testing.assert_array_equal(codes[neg[i]], expected)  # n_repeats negatives per other cluster, in order
    # positives are drawn uniformly within the cluster
    many, _ = sampler.sample(torch.arange(500).repeat(40))
    smallest = np.flatnonzero(codes == 3)
    hits = np.bincount(many.numpy().ravel(), minlength=500)[smallest]
    assert hits.min() > 0.5 * hits.mean()


def test_single_triplet_sampler():
    labels = np.repeat([0, 1, 2], 50)
    sampler = TripletSampler(labels, n_repeats=2, multi_triplet=False)
    torch.manual_seed(1)
    pos, neg = sampler.sample(torch.arange(150))
    assert pos.shape == (150, 2)
    neg_labels = labels[neg.numpy()]
    assert np.all(neg_labels[:, 0] == neg_labels[:, 1])  # one random other cluster per anchor
    assert np.all(neg_labels[:, 0] != labels)
    assert len(np.unique(neg_labels[labels == 0, 0])) == 2


def test_sampler_needs_two_clusters():
    with pytest.raises(ValueError, match="two"):
        TripletSampler(np.zeros(10))


def test_sampler_seeded():
    s = TripletSampler(np.arange(100) % 5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = s.sample(torch.arange(100), g1)
    b = s.sample(torch.arange(100), g2)
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_partners_within_the_batch():
    labels = np.repeat(np.arange(4), 50)
    sampler = TripletSampler(labels)
    gen = torch.Generator().manual_seed(0)
    batch = torch.tensor([0, 1, 2, 60, 61, 110, 111, 112, 160])  # every cluster present
    pos, neg = sampler.sample(batch, gen, within=batch)
    assert set(pos.unique().tolist()) <= set(batch.tolist())
    assert set(neg.unique().tolist()) <= set(batch.tolist())
    lab = torch.from_numpy(labels)
    assert torch.all(lab[pos] == lab[batch][:, None])
    assert torch.all(lab[neg] != lab[batch][:, None])
    # a cluster missing from the batch is drawn from all spots
    batch = torch.tensor([0, 1, 60, 61, 110])  # no spot of cluster 3
    pos, neg = sampler.sample(batch, gen, within=batch)
    assert torch.all(lab[neg] != lab[batch][:, None])
    from_3 = neg[lab[neg] == 3]
    assert from_3.numel() == batch.numel()
    assert torch.all((from_3 >= 150) & (from_3 < 200))
    assert set(neg[lab[neg] != 3].tolist()) <= set(batch.tolist())
