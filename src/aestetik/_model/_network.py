"""Encoder and decoder ensembles of AESTETIK (no AnnData here).

The ``n_ensemble`` members of the reference run as one batched op each: their convolution weights are
stacked along the output channels (one ``Conv2d`` with ``E * c_hid`` outputs is exactly ``E`` convolutions
of the same input), their linear layers are an ``einsum`` over stacked weights, and the decoders' transposed
convolutions are one grouped ``ConvTranspose2d``. Every member is initialised exactly as its stand-alone
PyTorch module would be.

The encoder is split at the dropout: :meth:`EnsembleEncoder.features` computes conv -> batch-norm -> ReLU
-> max-pool without dropout, :meth:`EnsembleEncoder.head` applies a channel mask and the linear layer.
``Dropout2d`` multiplies whole channels by 0 or ``1 / (1 - p)``; ReLU and max-pool commute with such a
non-negative per-channel factor, so ``pool(relu(mask * bn(conv(x)))) == mask * pool(relu(bn(conv(x))))``.
A spot's convolution therefore does not depend on its dropout mask: it is computed once per step and each
occurrence of the spot (anchor, positive or negative partner, Monte-Carlo pass) gets its own mask.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._ensemble import ConvSummary, conv_shapes, dropout_mask, effective_kernel, ensemble_median, members_linear
from ._lattice_conv import lattice_conv_summary


class EnsembleEncoder(nn.Module):
    """``n_ensemble`` encoder units: Conv2d -> BatchNorm2d -> Dropout2d -> ReLU -> MaxPool2d -> Linear."""

    def __init__(
        self,
        in_channels: int,
        window_size: int,
        *,
        c_hid: int,
        latent_dim: int,
        kernel_size: int,
        n_ensemble: int,
        dropout: float,
    ) -> None:
        super().__init__()
        _, pooled = conv_shapes(window_size, kernel_size)
        if pooled < 1:
            msg = f"window_size={window_size} is too small for kernel_size={kernel_size}."
            raise ValueError(msg)
        self.n_ensemble, self.c_hid, self.latent_dim, self.dropout = n_ensemble, c_hid, latent_dim, dropout
        self.window_size, self.kernel_size, self.n_pooled = window_size, kernel_size, pooled * pooled
        self.conv = nn.Conv2d(in_channels, n_ensemble * c_hid, kernel_size)
        self.bn = nn.BatchNorm2d(n_ensemble * c_hid)
        flat = c_hid * self.n_pooled
        self.weight = nn.Parameter(torch.empty(n_ensemble, flat, latent_dim))
        self.bias = nn.Parameter(torch.empty(n_ensemble, latent_dim))
        with torch.no_grad():
            convs = [nn.Conv2d(in_channels, c_hid, kernel_size) for _ in range(n_ensemble)]
            self.conv.weight.copy_(torch.cat([c.weight for c in convs]))
            self.conv.bias.copy_(torch.cat([c.bias for c in convs]))
            for e in range(n_ensemble):
                lin = nn.Linear(flat, latent_dim)
                self.weight[e].copy_(lin.weight.T)
                self.bias[e].copy_(lin.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, w, w) -> (E, N, c_hid, pooled positions), everything before the dropout mask.

        The plain computation (batch-norm over ``x``); training and embedding use the equivalent
        :meth:`summarize` / :meth:`pooled`.
        """
        h = self.bn(self.conv(x))
        h = F.relu(h)
        h = F.max_pool2d(h, kernel_size=self.kernel_size, stride=3)
        return h.reshape(x.shape[0], self.n_ensemble, self.c_hid, self.n_pooled).transpose(0, 1).contiguous()

    def summarize(self, x: torch.Tensor) -> ConvSummary:
        """Everything batch-norm -> ReLU -> max-pool needs from the convolution of ``x``, per spot.

        Batch-norm is a per-channel affine map ``a * h + b``; ReLU is monotone, so after it the max-pool
        picks the largest raw value when ``a > 0`` and the smallest when ``a < 0``. Keeping the per-spot
        sums (for the statistics) and the max- and min-pooled raw maps therefore lets any batch of
        occurrences of these spots be normalised with its own statistics, exactly, without repeating
        the convolution. This is the plain computation on filled windows; training and embedding use the
        equal :meth:`summarize_lattice`.
        """
        h = self.conv(x)
        n, o = h.shape[0], h.shape[1]
        flat = h.reshape(n, o, -1)
        high = F.max_pool2d(h, self.kernel_size, stride=3).reshape(n, o, -1)
        low = -F.max_pool2d(-h, self.kernel_size, stride=3).reshape(n, o, -1)
        return ConvSummary(
            total=flat.sum(-1), squares=flat.square().sum(-1), high=high, low=low, positions=flat.shape[2]
        )

    def summarize_lattice(self, features: torch.Tensor, medians: torch.Tensor, index: torch.Tensor) -> ConvSummary:
        """:meth:`summarize` of the windows with index rows ``index`` (B, w * w) and medians (B, C).

        Computed with one convolution per distinct lattice cell (:mod:`aestetik._model._lattice_conv`) instead of
        one per window position.
        """
        side = self.window_size - self.kernel_size + 1
        total, squares, high, low = lattice_conv_summary(
            features, medians, index, self.conv.weight, self.conv.bias, window_size=self.window_size
        )
        return ConvSummary(total=total, squares=squares, high=high, low=low, positions=side * side)

    @staticmethod
    def group_stats(
        summary: ConvSummary, index: torch.Tensor, sizes: list[int]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Batch-norm statistics of several batches at once: rows ``index`` of ``summary`` in groups of ``sizes``.

        Each group is a batch of occurrences (repeated spots count repeatedly). Returns the (G, O) per-channel
        means and biased variances and the number of values behind each group's statistics (G, 1) (rows times
        positions), with a handful of operations whatever G.
        """
        total, squares = summary.total.double(), summary.squares.double()
        u, g = total.shape[0], len(sizes)
        group = torch.empty(index.shape[0], dtype=torch.long, device=index.device)
        start = 0
        for i, size in enumerate(sizes):
            group[start : start + size] = i
            start += size
        counts = torch.bincount(group * u + index, minlength=g * u).reshape(g, u).to(total.dtype)
        n = counts.sum(1, keepdim=True) * summary.positions
        mean = counts @ total / n
        var = (counts @ squares / n - mean * mean).clamp_min(0)
        return (mean.float(), var.float()), n

    @staticmethod
    def stats_from_sums(total: torch.Tensor, squares: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and biased variance from per-channel sums and sums of squares over ``count`` values."""
        mean = total.double() / count
        var = (squares.double() / count - mean * mean).clamp_min(0)
        return mean.float(), var.float()

    def pooled(
        self,
        summary: ConvSummary,
        index: torch.Tensor,
        stats: tuple[torch.Tensor, torch.Tensor],
        sizes: list[int] | None = None,
    ) -> torch.Tensor:
        """(E, len(index), c_hid, P): batch-norm with ``stats`` -> ReLU -> max-pool for rows ``index``.

        ``stats`` are (O,) for one batch, or (G, O) from :meth:`group_stats` for consecutive groups of ``sizes``
        rows, each normalised with its own (a per-row gather of the statistics would make their gradient a
        scatter onto G rows, which serialises on a GPU).
        """
        mean, var = stats
        if sizes is not None:
            groups = index.split(sizes)
            return torch.cat([self.pooled(summary, rows, (mean[g], var[g])) for g, rows in enumerate(groups)], dim=1)
        scale = self.bn.weight / torch.sqrt(var + self.bn.eps)
        shift = self.bn.bias - scale * mean
        if index.shape[0] < summary.high.shape[0]:  # fewer occurrences than spots: gather, then normalise
            high, low = summary.high.index_select(0, index), summary.low.index_select(0, index)
            h = F.relu(torch.where((scale >= 0)[:, None], high, low) * scale[:, None] + shift[:, None])
        else:  # normalise every spot once, then gather its occurrences
            h = F.relu(torch.where((scale >= 0)[:, None], summary.high, summary.low) * scale[:, None] + shift[:, None])
            h = h.index_select(0, index)
        return h.reshape(index.shape[0], self.n_ensemble, self.c_hid, self.n_pooled).transpose(0, 1)

    @torch.no_grad()
    def update_running_stats(self, stats: tuple[torch.Tensor, torch.Tensor], n: int | torch.Tensor) -> None:
        """Update batch-norm's running averages as its training-mode forward pass would.

        ``stats`` (O,) over ``n`` values, or (G, O) of G batches in order over ``n`` (G, 1) values each (from
        :meth:`group_stats`): the same as G updates in a row, computed at once.
        """
        mean, var = stats
        if mean.dim() == 1:  # one batch
            mean, var, n = mean[None], var[None], torch.full((1, 1), n, dtype=torch.float64, device=mean.device)
        m = self.bn.momentum if self.bn.momentum is not None else 0.1
        g = mean.shape[0]
        unbiased = var * (n / (n - 1).clamp_min(1)).to(var.dtype)
        # after G updates in a row the g-th batch (0-based) carries m (1 - m)^(G - 1 - g)
        decay = m * (1 - m) ** torch.arange(g - 1, -1, -1, device=mean.device, dtype=mean.dtype)[:, None]
        self.bn.running_mean.mul_((1 - m) ** g).add_((decay * mean).sum(0))
        self.bn.running_var.mul_((1 - m) ** g).add_((decay * unbiased).sum(0))
        self.bn.num_batches_tracked.add_(g)

    def sample_mask(self, n: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor | None:
        """A ``Dropout2d`` mask (E, N, c_hid) with values 0 or ``1 / (1 - p)``; ``None`` when dropout is off."""
        if self.dropout <= 0:
            return None
        return dropout_mask((self.n_ensemble, n, self.c_hid), self.dropout, generator=generator, device=device)

    def head(self, feats: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(E, N, c_hid, P) features and an (E, N, c_hid) mask -> (E, N, latent) per-member embeddings."""
        if mask is not None:
            feats = feats * mask[..., None]
        return members_linear(feats.reshape(self.n_ensemble, feats.shape[1], -1), self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Median embedding (N, latent) with dropout active in training mode."""
        feats = self.features(x)
        mask = self.sample_mask(x.shape[0], device=x.device) if self.training else None
        return ensemble_median(self.head(feats, mask))


class EnsembleDecoder(nn.Module):
    """``n_ensemble`` decoder units: Linear -> ReLU -> upsample -> Dropout2d -> ConvTranspose2d -> BatchNorm2d -> Sigmoid.

    When the pooled map is a single position (``w`` = 5 or 7 with ``k`` = 3) the input of the transposed
    convolution is spatially constant per channel (nearest upsampling of a 1 x 1 map, then a per-channel
    dropout factor), so that layer is the fixed linear map ``c_hid -> C * w * w`` obtained by transposed
    convolution of one-hot constant maps; it is rebuilt from the kernel at every call (exact, and about
    ``conv_out**2`` times fewer operations).
    """

    def __init__(
        self,
        out_channels: int,
        window_size: int,
        *,
        c_hid: int,
        latent_dim: int,
        kernel_size: int,
        n_ensemble: int,
        dropout: float,
    ) -> None:
        super().__init__()
        conv_out, pooled = conv_shapes(window_size, kernel_size)
        self.n_ensemble, self.c_hid, self.out_channels, self.dropout = n_ensemble, c_hid, out_channels, dropout
        self.conv_out, self.pooled, self.window_size = conv_out, pooled, window_size
        flat = c_hid * pooled * pooled
        self.weight = nn.Parameter(torch.empty(n_ensemble, latent_dim, flat))
        self.bias = nn.Parameter(torch.empty(n_ensemble, flat))
        self.deconv = nn.ConvTranspose2d(n_ensemble * c_hid, n_ensemble * out_channels, kernel_size, groups=n_ensemble)
        self.bn = nn.BatchNorm2d(n_ensemble * out_channels)
        with torch.no_grad():
            for e in range(n_ensemble):
                lin = nn.Linear(latent_dim, flat)
                self.weight[e].copy_(lin.weight.T)
                self.bias[e].copy_(lin.bias)
            deconvs = [nn.ConvTranspose2d(c_hid, out_channels, kernel_size) for _ in range(n_ensemble)]
            self.deconv.weight.copy_(torch.cat([d.weight for d in deconvs]))
            self.deconv.bias.copy_(torch.cat([d.bias for d in deconvs]))

    def sample_mask(self, n: int, device=None) -> torch.Tensor | None:
        """A ``Dropout2d`` mask (E, N, c_hid) in training mode, else ``None``."""
        if not self.training or self.dropout <= 0:
            return None
        return dropout_mask((self.n_ensemble, n, self.c_hid), self.dropout, device=device)

    def constant_map(self) -> torch.Tensor:
        """(E, c_hid, C * w * w): the transposed convolution applied to one-hot spatially constant inputs."""
        eye = torch.eye(self.c_hid, device=self.deconv.weight.device, dtype=self.deconv.weight.dtype)
        ones = eye.repeat(1, self.n_ensemble)[:, :, None, None].expand(-1, -1, self.conv_out, self.conv_out)
        out = F.conv_transpose2d(ones, self.deconv.weight, groups=self.n_ensemble)  # (c_hid, E*C, w, w)
        return out.reshape(self.c_hid, self.n_ensemble, -1).transpose(0, 1)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None, *, generic: bool = False) -> torch.Tensor:
        """(N, latent) -> median reconstruction (N, C, w, w); ``mask`` overrides the sampled dropout mask."""
        n, e = z.shape[0], self.n_ensemble
        if mask is None:
            mask = self.sample_mask(n, device=z.device)
        h = F.relu(members_linear(z.expand(e, n, z.shape[1]), self.weight, self.bias))  # (E, N, c_hid * P)
        if self.pooled == 1 and not generic:
            if mask is not None:
                h = h * mask
            positions = self.window_size**2
            linear_map = self.constant_map()  # (E, c_hid, C * w * w)
            scale, shift = self._folded_batch_norm(h, linear_map)
            weight = linear_map * scale.repeat_interleave(positions, dim=1)[:, None, :]
            # the shift as one more input row of ones: one matmul, no broadcast copy of the shift
            ones = torch.ones((e, n, 1), dtype=h.dtype, device=h.device)
            weight = torch.cat([weight, shift.repeat_interleave(positions, dim=1)[:, None, :]], dim=1)
            pre = torch.bmm(torch.cat([h, ones], dim=2), weight)
            # the sigmoid is increasing, so the median of the members' sigmoids is the sigmoid of their median
            return torch.sigmoid(ensemble_median(pre)).reshape(n, self.out_channels, self.window_size, self.window_size)
        else:
            h = h.transpose(0, 1).reshape(n, e * self.c_hid, self.pooled, self.pooled)
            h = F.interpolate(h, size=(self.conv_out, self.conv_out), mode="nearest")
            if mask is not None:
                h = h * mask.transpose(0, 1).reshape(n, e * self.c_hid)[:, :, None, None]
            out = self.deconv(h)
        out = torch.sigmoid(self.bn(out.reshape(n, e * self.out_channels, self.window_size, self.window_size)))
        out = out.reshape(n, e, self.out_channels, self.window_size, self.window_size)
        return ensemble_median(out.transpose(0, 1))

    def _folded_batch_norm(self, h: torch.Tensor, linear_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, C) scale and shift such that batch-norm of the transposed convolution is ``scale * conv + shift``.

        ``h`` (E, N, c_hid) is the constant input of the transposed convolution, whose output is
        ``h @ linear_map + bias``. In training mode its per-member, per-channel mean and variance over the
        batch and the ``w x w`` positions follow exactly from the mean and the second-moment matrix
        (``c_hid x c_hid``) of ``h``, so the full-size normalisation is never materialised; the running
        statistics are updated as ``BatchNorm2d`` would.
        """
        bn, e, c = self.bn, self.n_ensemble, self.out_channels
        bias = self.deconv.bias.reshape(e, c)
        gamma, beta = bn.weight.reshape(e, c), bn.bias.reshape(e, c)
        if bn.training or bn.running_mean is None:
            m, hd, bd = linear_map.double(), h.double(), bias.double()  # double: E[x^2] - E[x]^2 cancels
            n = h.shape[1]
            second = torch.bmm(hd.transpose(1, 2), hd) / n  # (E, H, H)
            lin = torch.bmm(hd.mean(1, keepdim=True), m).reshape(e, c, -1)  # mean over spots of h @ M
            quad = (torch.bmm(second, m) * m).sum(1).reshape(e, c, -1)  # mean over spots of (h @ M)^2
            mean = lin.mean(-1) + bd
            var = ((quad + 2 * bd[..., None] * lin).mean(-1) + bd * bd - mean * mean).clamp_min(0)
            if bn.training and bn.running_mean is not None:
                with torch.no_grad():
                    count = n * lin.shape[-1]
                    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked + 1)
                    unbiased = var * (count / max(count - 1, 1))
                    bn.running_mean.mul_(1 - momentum).add_(momentum * mean.reshape(-1).to(h.dtype))
                    bn.running_var.mul_(1 - momentum).add_(momentum * unbiased.reshape(-1).to(h.dtype))
                    bn.num_batches_tracked.add_(1)
            mean, var = mean.to(h.dtype), var.to(h.dtype)
        else:
            mean, var = bn.running_mean.reshape(e, c), bn.running_var.reshape(e, c)
        scale = gamma / torch.sqrt(var + bn.eps)
        return scale, beta + scale * (bias - mean)


class AestetikNetwork(nn.Module):
    """The AESTETIK autoencoder: an encoder ensemble and a decoder ensemble."""

    def __init__(
        self,
        in_channels: int,
        window_size: int,
        *,
        c_hid: int = 64,
        latent_dim: int = 16,
        kernel_size: int = 3,
        n_ensemble: int = 3,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        k = effective_kernel(window_size, kernel_size)
        kw = {"c_hid": c_hid, "latent_dim": latent_dim, "kernel_size": k, "n_ensemble": n_ensemble, "dropout": dropout}
        self.encoder = EnsembleEncoder(in_channels, window_size, **kw)
        self.decoder = EnsembleDecoder(in_channels, window_size, **kw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and reconstruction of a batch of windows."""
        z = self.encoder(x)
        return z, self.decoder(z)
