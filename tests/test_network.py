"""The batched ensemble network against a plain per-member computation written like the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from aestetik._model._ensemble import conv_shapes, effective_kernel, ensemble_median, members_linear, sum_outer
from aestetik._model._network import AestetikNetwork, EnsembleEncoder


def _plain_encoders(net: AestetikNetwork, c_in: int, w: int, mask_after_bn: list[torch.Tensor] | None = None):
    """Reference-style ``Encode`` units holding the weights of ``net``'s members."""
    enc = net.encoder
    k, h = enc.kernel_size, enc.c_hid
    _, pooled = conv_shapes(w, k)
    units = []
    for e in range(enc.n_ensemble):
        conv = nn.Conv2d(c_in, h, k)
        bn = nn.BatchNorm2d(h)
        lin = nn.Linear(h * pooled * pooled, enc.latent_dim)
        with torch.no_grad():
            conv.weight.copy_(enc.conv.weight[e * h : (e + 1) * h])
            conv.bias.copy_(enc.conv.bias[e * h : (e + 1) * h])
            bn.weight.copy_(enc.bn.weight[e * h : (e + 1) * h])
            bn.bias.copy_(enc.bn.bias[e * h : (e + 1) * h])
            lin.weight.copy_(enc.weight[e].T)
            lin.bias.copy_(enc.bias[e])
        if mask_after_bn is None:
            drop: nn.Module = nn.Identity()
        else:
            m = mask_after_bn[e]

            class _Mask(nn.Module):
                def forward(self, x, m=m):
                    return x * m[:, :, None, None]

            drop = _Mask()
        units.append(nn.Sequential(conv, bn, drop, nn.ReLU(), nn.MaxPool2d(k, stride=3), nn.Flatten(), lin))
    return units


def _median(outs: list[torch.Tensor]) -> torch.Tensor:
    return torch.median(torch.stack(outs, 1), 1).values


@pytest.mark.parametrize(("w", "k", "n_ensemble"), [(7, 3, 3), (5, 3, 3), (9, 3, 2), (3, 3, 1)])
def test_encoder_equals_plain_members(w, k, n_ensemble):
    torch.manual_seed(0)
    c_in = 6
    net = AestetikNetwork(c_in, w, c_hid=8, latent_dim=4, kernel_size=k, n_ensemble=n_ensemble, dropout=0.3)
    x = torch.rand(40, c_in, w, w)
    enc = net.encoder
    mask = enc.sample_mask(40)
    units = _plain_encoders(net, c_in, w, mask_after_bn=list(mask))
    for u in units:
        u.train()
    expected = _median([u(x) for u in units])
    got = ensemble_median(enc.head(enc.features(x), mask))  # mask applied after pooling
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_decoder_equals_plain_members():
    torch.manual_seed(1)
    c_in, w, k, h, lat = 5, 7, 3, 8, 4
    net = AestetikNetwork(c_in, w, c_hid=h, latent_dim=lat, kernel_size=k, n_ensemble=3, dropout=0.0)
    dec = net.decoder
    conv_out, pooled = conv_shapes(w, k)
    z = torch.randn(30, lat)
    outs, bns = [], []
    for e in range(3):
        lin = nn.Linear(lat, h * pooled * pooled)
        deconv = nn.ConvTranspose2d(h, c_in, k)
        bn = nn.BatchNorm2d(c_in)
        with torch.no_grad():
            lin.weight.copy_(dec.weight[e].T)
            lin.bias.copy_(dec.bias[e])
            deconv.weight.copy_(dec.deconv.weight[e * h : (e + 1) * h])
            deconv.bias.copy_(dec.deconv.bias[e * c_in : (e + 1) * c_in])
        unit = nn.Sequential(
            lin,
            nn.Unflatten(1, (-1, pooled, pooled)),
            nn.ReLU(),
            nn.UpsamplingNearest2d(size=(conv_out, conv_out)),
            nn.Dropout2d(0.0),
            deconv,
            bn,
            nn.Sigmoid(),
        ).train()
        outs.append(unit(z))
        bns.append(bn)
    net.train()
    torch.testing.assert_close(dec(z), _median(outs), rtol=1e-5, atol=1e-6)
    # each member's batch-norm running statistics follow its stand-alone unit
    torch.testing.assert_close(dec.bn.running_mean, torch.cat([bn.running_mean for bn in bns]))
    torch.testing.assert_close(dec.bn.running_var, torch.cat([bn.running_var for bn in bns]))
    assert int(dec.bn.num_batches_tracked) == 1
    # the transposed-convolution path gives the same reconstruction
    torch.testing.assert_close(dec(z, generic=True), _median(outs), rtol=1e-5, atol=1e-6)


def test_ensemble_median_matches_torch_median():
    torch.manual_seed(2)
    for e in (1, 2, 3, 4, 5):
        x = torch.randn(e, 50, 7)
        torch.testing.assert_close(ensemble_median(x), torch.median(x, dim=0).values)
    x = torch.randn(3, 20, requires_grad=True)
    g = torch.randn(20)
    (ensemble_median(x) * g).sum().backward()
    y = x.detach().clone().requires_grad_(True)
    (torch.median(y, dim=0).values * g).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)  # the gradient reaches exactly the median member
    # ties: the value is the median and the gradient goes to the first member holding it, once
    x = torch.randint(0, 3, (3, 500)).float().requires_grad_(True)
    ensemble_median(x).sum().backward()
    torch.testing.assert_close(ensemble_median(x.detach()), torch.median(x.detach(), dim=0).values)
    first = (x.detach() == ensemble_median(x.detach())).float().cumsum(0).eq(1) & (
        x.detach() == ensemble_median(x.detach())
    )
    torch.testing.assert_close(x.grad, first.float())


def test_mask_commutes_with_relu_and_pool():
    torch.manual_seed(3)
    x = torch.randn(10, 4, 5, 5)
    m = (torch.rand(10, 4) > 0.3).float() / 0.7
    pool = nn.MaxPool2d(3, stride=3)
    before = pool(torch.relu(x * m[:, :, None, None]))
    after = pool(torch.relu(x)) * m[:, :, None, None]
    torch.testing.assert_close(before, after)


def test_dropout_mask_statistics():
    torch.manual_seed(4)
    net = AestetikNetwork(3, 7, c_hid=64, latent_dim=4, n_ensemble=3, dropout=0.3)
    m = net.encoder.sample_mask(20_000)
    assert m.shape == (3, 20_000, 64)
    values = torch.unique(m).tolist()
    assert values[0] == 0.0
    assert values[1] == pytest.approx(1 / 0.7)
    assert len(values) == 2
    assert abs((m == 0).float().mean().item() - 0.3) < 0.01


def test_shapes_and_kernel_rules():
    assert conv_shapes(7, 3) == (5, 1)  # the reference's pool sees a 3x3 corner of the 5x5 map
    assert conv_shapes(5, 3) == (3, 1)
    assert conv_shapes(9, 3) == (7, 2)
    assert effective_kernel(3, 3) == 2
    assert effective_kernel(7, 3) == 3
    net = AestetikNetwork(4, 7)
    z, rec = net(torch.rand(8, 4, 7, 7))
    assert z.shape == (8, 16)
    assert rec.shape == (8, 4, 7, 7)
    assert torch.all((rec >= 0) & (rec <= 1))


def test_initialisation_matches_pytorch_defaults():
    torch.manual_seed(5)
    net = AestetikNetwork(30, 7, c_hid=64, n_ensemble=3)
    bound = 1 / math.sqrt(30 * 9)  # kaiming-uniform(a=sqrt(5)) bound of a Conv2d(30, 64, 3)
    w = net.encoder.conv.weight
    assert w.abs().max() <= bound + 1e-7
    assert w.abs().max() > 0.9 * bound
    assert not np.allclose(w[:64].detach().numpy(), w[64:128].detach().numpy())  # members differ


@pytest.mark.parametrize("w", [5, 7])
def test_decoder_constant_map_equals_transposed_convolution(w):
    """The precomputed linear map equals upsample -> dropout -> ConvTranspose2d, with the same mask.

    The fast path also folds batch-norm into that map, with statistics from the moments of its input; in
    double precision values, gradients and running statistics match the plain layers to rounding.
    """
    torch.manual_seed(6)
    net = AestetikNetwork(5, w, c_hid=8, latent_dim=4, n_ensemble=3, dropout=0.3).train().double()
    dec = net.decoder
    z = torch.randn(25, 4, dtype=torch.float64)
    mask = dec.sample_mask(25)
    assert mask is not None
    mask = mask.double()
    results = []
    for generic in (False, True):
        dec.zero_grad()
        dec.bn.reset_running_stats()
        out = dec(z, mask, generic=generic)
        (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
        results.append(
            [out, dec.bn.running_mean.clone(), dec.bn.running_var.clone()] + [p.grad.clone() for p in dec.parameters()]
        )
    for fast, slow in zip(*results, strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-11)
    # evaluation mode normalises with the running statistics on both paths
    dec.eval()
    torch.testing.assert_close(dec(z, mask), dec(z, mask, generic=True), rtol=1e-9, atol=1e-11)


def _batch_stats(summary, index=None):
    """Plain per-channel mean and biased variance of one batch of summary rows (repeats count)."""
    total, squares = summary.total.double(), summary.squares.double()
    if index is None:
        n, s1, s2 = total.shape[0], total.sum(0), squares.sum(0)
    else:
        counts = torch.bincount(index, minlength=total.shape[0]).to(total.dtype)
        n, s1, s2 = index.shape[0], counts @ total, counts @ squares
    return EnsembleEncoder.stats_from_sums(s1, s2, n * summary.positions)


@pytest.mark.parametrize(("w", "k"), [(7, 3), (5, 3), (9, 3)])
def test_summary_batches_equal_plain_batch_norm(w, k):
    """Normalising occurrences from the per-spot summary equals batch-norm on the repeated windows."""
    torch.manual_seed(7)
    net = AestetikNetwork(4, w, c_hid=8, latent_dim=4, kernel_size=k, n_ensemble=3).train()
    enc = net.encoder
    with torch.no_grad():
        enc.bn.weight.copy_(torch.randn_like(enc.bn.weight))  # negative scales take the min-pooled branch
        enc.bn.bias.copy_(torch.randn_like(enc.bn.bias))
    x = torch.rand(30, 4, w, w)
    summary = enc.summarize(x)
    # all spots, a batch with repeated spots, and fewer occurrences than spots (gathered before normalising)
    for index in (torch.arange(30), torch.randint(0, 30, (75,)), torch.randint(0, 30, (12,))):
        got = enc.pooled(summary, index, _batch_stats(summary, index))
        torch.testing.assert_close(got, enc.features(x[index]), rtol=1e-4, atol=1e-5)
    mean, var = _batch_stats(summary)
    h = enc.conv(x)
    torch.testing.assert_close(mean, h.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, h.var(dim=(0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-6)
    # gradients agree too
    for n_rows in (40, 12):
        index = torch.randint(0, 30, (n_rows,))
        xg = x.clone().requires_grad_(True)
        summary = enc.summarize(xg)
        enc.pooled(summary, index, _batch_stats(summary, index)).square().sum().backward()
        grads = [p.grad.clone() for p in (enc.conv.weight, enc.conv.bias, enc.bn.weight, xg)]
        enc.zero_grad()
        xp = x.clone().requires_grad_(True)
        enc.features(xp[index]).square().sum().backward()
        for got, want in zip(
            grads, (enc.conv.weight.grad, enc.conv.bias.grad, enc.bn.weight.grad, xp.grad), strict=True
        ):
            # the conv bias gradient is zero up to rounding (batch-norm removes the mean): compare on the
            # scale of the weight gradient
            scale = max(1.0, enc.conv.weight.grad.abs().max().item())
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * scale)
        enc.zero_grad()


def test_running_stats_follow_batch_norm():
    torch.manual_seed(8)
    net = AestetikNetwork(4, 7, c_hid=8, latent_dim=4, n_ensemble=3).train()
    enc = net.encoder
    x = torch.rand(20, 4, 7, 7)
    summary = enc.summarize(x)
    reference = nn.BatchNorm2d(enc.bn.num_features).train()
    enc.update_running_stats(_batch_stats(summary), 20 * summary.positions)
    reference(enc.conv(x).detach())
    torch.testing.assert_close(enc.bn.running_mean, reference.running_mean)
    torch.testing.assert_close(enc.bn.running_var, reference.running_var, rtol=1e-4, atol=1e-6)


def test_group_stats_equal_batches_one_by_one():
    """Several batches normalised at once equal each normalised alone; running stats as G updates in a row."""
    torch.manual_seed(9)
    net = AestetikNetwork(4, 7, c_hid=8, latent_dim=4, n_ensemble=3).double().train()
    enc = net.encoder
    with torch.no_grad():
        enc.bn.weight.copy_(torch.randn_like(enc.bn.weight))
        enc.bn.bias.copy_(torch.randn_like(enc.bn.bias))
    summary = enc.summarize(torch.rand(30, 4, 7, 7, dtype=torch.float64))
    sizes = [30, 60, 60, 7, 7]
    index = torch.cat([torch.randperm(30), torch.randint(0, 30, (sum(sizes) - 30,))])
    stats, counts = enc.group_stats(summary, index, sizes)
    got = enc.pooled(summary, index, stats, sizes)
    bn = enc.bn
    state = [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]
    enc.update_running_stats(stats, counts)
    grouped = [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]
    for buffer, value in zip((bn.running_mean, bn.running_var, bn.num_batches_tracked), state, strict=True):
        buffer.copy_(value)
    want = []
    for g, rows in enumerate(index.split(sizes)):
        one = _batch_stats(summary, rows)
        torch.testing.assert_close(stats[0][g], one[0])
        torch.testing.assert_close(stats[1][g], one[1])
        enc.update_running_stats(one, rows.shape[0] * summary.positions)
        want.append(enc.pooled(summary, rows, one))
    assert counts.flatten().tolist() == [s * summary.positions for s in sizes]
    want = torch.cat(want, dim=1)
    torch.testing.assert_close(got, want)
    for a, b in zip(grouped, (bn.running_mean, bn.running_var, bn.num_batches_tracked), strict=True):
        torch.testing.assert_close(a, b)
    # and the gradients (through the statistics too)
    up = torch.randn(got.shape, dtype=got.dtype)
    params = [enc.conv.weight, enc.bn.weight, enc.bn.bias]
    for a, b in zip(
        torch.autograd.grad((got * up).sum(), params, retain_graph=True),
        torch.autograd.grad((want * up).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("n", [7, 40, 41, 100])
def test_sum_outer_in_pieces(n):
    """The weight gradient summed over pieces of rows equals one product, with and without a remainder."""
    gen = torch.Generator().manual_seed(n)
    a = torch.randn(3, n, 5, dtype=torch.float64, generator=gen)
    b = torch.randn(3, n, 4, dtype=torch.float64, generator=gen)
    want = torch.einsum("enf,enl->efl", a, b)
    for rows in (None, 10, 20):
        torch.testing.assert_close(sum_outer(a, b, rows), want)
    # a transposed layout (the encoder's pooled features) and a broadcast one (the decoder's input)
    torch.testing.assert_close(sum_outer(a.transpose(0, 1).contiguous().transpose(0, 1), b, 10), want)
    z = a[:1].expand(3, n, 5)
    torch.testing.assert_close(sum_outer(z, b, 10), torch.einsum("nf,enl->efl", a[0], b))


def test_members_linear_gradients():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    up = torch.randn(3, 50, 4, dtype=torch.float64, generator=gen)
    got = torch.autograd.grad((members_linear(x, w, b) * up).sum(), (x, w, b))
    want = torch.autograd.grad(((torch.bmm(x, w) + b[:, None, :]) * up).sum(), (x, w, b))
    for a, c in zip(got, want, strict=True):
        torch.testing.assert_close(a, c)
    with torch.no_grad():
        torch.testing.assert_close(members_linear(x, w, b), torch.bmm(x, w) + b[:, None, :])
