"""The Lightning training module and its anchor batches."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch

from ._ensemble import ensemble_median
from ._loss import LossOutput, aestetik_loss
from ._memory import CACHE_BYTES
from ._network import AestetikNetwork
from ._sampler import TripletSampler
from ._windows import gather_windows, window_medians


class AnchorBatches(torch.utils.data.IterableDataset):
    """Every spot is an anchor once per epoch: a fresh permutation split into batches of index tensors.

    Under DDP (``world_size`` processes; read from :mod:`torch.distributed` when not given) every rank draws the
    same permutation from the same seed, splits it into ``steps * world_size`` near-equal batches of at most
    ``batch_size`` anchors, with ``steps = ceil(n / (batch_size * world_size))``, and takes every ``world_size``-th
    from its ``rank`` on: the ranks' shards are disjoint, cover every spot once and have the same number of steps.
    One process splits the permutation into batches of exactly ``batch_size`` (the last one shorter).
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, *, rank: int | None = None, world_size: int | None = None
    ) -> None:
        super().__init__()
        self.n, self.batch_size = n, batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for spawned processes (a :class:`torch.Generator` itself does not survive ``spawn``)."""
        state = dict(self.__dict__)
        state["generator"] = self.generator.get_state().numpy().tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(state.pop("generator")), dtype=torch.uint8))
        self.__dict__.update(state, generator=generator)

    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)`` of this process."""
        if self.world_size is not None:
            return int(self.rank or 0), int(self.world_size)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def steps(self, world_size: int) -> int:
        """Steps per epoch on each of ``world_size`` ranks."""
        return math.ceil(self.n / (self.batch_size * world_size))

    def __len__(self) -> int:
        return self.steps(self.shard()[1])

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        rank, world = self.shard()
        if world == 1:
            yield from order.split(self.batch_size)
            return
        yield from order.tensor_split(self.steps(world) * world)[rank::world]


class AestetikModule(L.LightningModule):
    """Training plan: gathers windows on the device, draws triplets, encodes each distinct spot once.

    Parameters
    ----------
    features
        (n, C) min-max scaled transcriptomics then morphology features.
    index
        (n, w * w) window index (-1 where no spot).
    labels_transcriptomics, labels_morphology
        Pseudo-labels per spot.
    partners
        ``'all'``: triplet partners drawn from all spots (the reference); ``'batch'``: from the anchors of the
        step (the same distribution when a batch holds the whole section), so a step convolves at most ``batch_size`` spots.
    n_transcriptomics
        Number of transcriptomics channels.
    window_size
        ``w``.
    weights
        Calibrated ``(w_t, w_m)``.
    network_kwargs
        Passed to :class:`~aestetik._model._network.AestetikNetwork`.
    """

    def __init__(
        self,
        features: np.ndarray,
        index: np.ndarray,
        labels_transcriptomics: np.ndarray,
        labels_morphology: np.ndarray,
        *,
        n_transcriptomics: int,
        window_size: int,
        weights: tuple[float, float],
        network_kwargs: dict[str, Any],
        rec_alpha: float = 1.0,
        triplet_alpha: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        n_repeats: int = 1,
        multi_triplet: bool = True,
        partners: str = "all",
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        super().__init__()
        self.window_size, self.n_transcriptomics = window_size, n_transcriptomics
        self.w_t, self.w_m = weights
        self.rec_alpha, self.triplet_alpha, self.lr, self.weight_decay = rec_alpha, triplet_alpha, lr, weight_decay
        self.network = AestetikNetwork(features.shape[1], window_size, **network_kwargs)
        self.register_buffer("features", torch.as_tensor(features, dtype=torch.float32), persistent=False)
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.int32), persistent=False)
        self.cache_bytes, self.partners = cache_bytes, partners
        self._median_cache: torch.Tensor | None = None
        kw = {"n_repeats": n_repeats, "multi_triplet": multi_triplet}
        self.sampler_t = TripletSampler(labels_transcriptomics, **kw) if self.w_t > 0 and triplet_alpha else None
        self.sampler_m = TripletSampler(labels_morphology, **kw) if self.w_m > 0 and triplet_alpha else None

    def on_fit_start(self) -> None:
        """Move the samplers' index pools to the training device."""
        for s in (self.sampler_t, self.sampler_m):
            if s is not None:
                s.to(self.device)

    @property
    def medians(self) -> torch.Tensor:
        """(n, C) per-window, per-channel medians: the value of every window's empty positions.

        The features do not change during training, so they are computed once per device (in chunks).
        """
        cache = self._median_cache
        if cache is None or cache.device != self.features.device:
            with torch.no_grad():
                rows = torch.arange(self.features.shape[0], device=self.features.device).split(1 << 16)
                cache = torch.cat([window_medians(self.features, self.index[r]) for r in rows])
            self._median_cache = cache
        return cache

    def windows(self, spots: torch.Tensor) -> torch.Tensor:
        """Filled (N, C, w, w) windows of ``spots``."""
        return gather_windows(self.features, self.index[spots], self.window_size, self.medians[spots])

    def summarize(self, spots: torch.Tensor):
        """Convolution summaries of ``spots`` (one convolution per distinct lattice cell of their windows)."""
        return self.network.encoder.summarize_lattice(self.features, self.medians[spots], self.index[spots])

    def step_loss(self, anchors: torch.Tensor) -> LossOutput:
        """Loss of one batch of anchor indices."""
        groups = [anchors]
        for sampler in (self.sampler_t, self.sampler_m):
            if sampler is not None:
                within = anchors if self.partners == "batch" else None
                groups.extend(p.reshape(-1) for p in sampler.sample(anchors, within=within))
        occurrences = torch.cat(groups)
        spots, inverse = torch.unique(occurrences, return_inverse=True)
        encoder = self.network.encoder
        summary = self.summarize(spots)  # each spot's convolution once, each lattice cell once
        # as the reference, anchors, positives and negatives are normalised as separate batches (all at once)
        sizes = [g.shape[0] for g in groups]
        stats, counts = encoder.group_stats(summary, inverse, sizes)
        encoder.update_running_stats(stats, counts)
        feats = encoder.pooled(summary, inverse, stats, sizes)
        mask = encoder.sample_mask(occurrences.shape[0], device=anchors.device)
        z = ensemble_median(encoder.head(feats, mask))
        b = anchors.shape[0]
        z_anchor, rest = z[:b], z[b:]
        partners: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for sampler in (self.sampler_t, self.sampler_m):
            if sampler is None:
                partners.append(None)
                continue
            s = sampler.n_partners
            pos, neg, rest = rest[: b * s], rest[b * s : 2 * b * s], rest[2 * b * s :]
            partners.append((pos.reshape(b, s, -1), neg.reshape(b, s, -1)))
        x_anchor = self.windows(anchors)
        reconstruction = self.network.decoder(z_anchor)
        return aestetik_loss(
            x_anchor,
            reconstruction,
            z_anchor,
            partners[0],
            partners[1],
            n_transcriptomics=self.n_transcriptomics,
            transcriptomics_weight=self.w_t,
            morphology_weight=self.w_m,
            rec_alpha=self.rec_alpha,
            triplet_alpha=self.triplet_alpha,
        )

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        """One optimisation step."""
        out = self.step_loss(batch.long())
        return {"loss": out.loss, **{k: v.detach() for k, v in out.parts().items()}}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with amsgrad (on a GPU its fused kernel: one launch per step instead of dozens)."""
        params = list(self.network.parameters())
        fused = True if params[0].is_cuda else None
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, amsgrad=True, fused=fused)

    @torch.inference_mode()
    def embed(
        self, n_mc_samples: int, *, seed: int, chunk_spots: int = 8192, max_elements: int = 1 << 24
    ) -> np.ndarray:
        """Monte-Carlo dropout embedding: mean over ``n_mc_samples`` masked passes.

        Batch-norm normalises with the statistics of the convolution output over all spots at the final
        weights (what the reference's training-mode batch-norm computes when the section is one inference
        batch), so no spot's embedding depends on how spots are split into batches. The convolution of each
        spot is computed once; each pass draws a fresh dropout mask for the pooled features.
        ``n_mc_samples=0`` gives the deterministic embedding without dropout.
        """
        self.network.eval()
        encoder = self.network.encoder
        n = self.features.shape[0]
        chunks = torch.arange(n, device=self.device).split(chunk_spots)
        # per-spot convolution summaries: kept when small, else recomputed for the second pass
        keep = n * encoder.conv.out_channels * (2 + 2 * encoder.n_pooled) * 4 <= self.cache_bytes
        summaries, total, squares = [], 0.0, 0.0
        for c in chunks:  # statistics of all spots, accumulated in chunks
            sm = self.summarize(c)
            total = total + sm.total.double().sum(0)
            squares = squares + sm.squares.double().sum(0)
            if keep:
                summaries.append(sm)
        stats = encoder.stats_from_sums(total, squares, n * sm.positions)
        out = torch.empty((n, encoder.latent_dim), dtype=torch.float32)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        for i, spots in enumerate(chunks):
            sm = summaries[i] if keep else self.summarize(spots)
            feats = encoder.pooled(sm, torch.arange(spots.shape[0], device=self.device), stats)  # (E, N, H, P)
            if n_mc_samples == 0 or encoder.dropout <= 0:
                out[spots.cpu()] = ensemble_median(encoder.head(feats, None)).float().cpu()
                continue
            m = spots.shape[0]
            acc = torch.zeros((m, encoder.latent_dim), device=self.device)
            passes = max(1, min(n_mc_samples, max_elements // max(feats.numel(), 1)))
            done = 0
            while done < n_mc_samples:
                p = min(passes, n_mc_samples - done)
                mask = encoder.sample_mask(p * m, generator=gen, device=self.device)
                rep = feats.repeat(1, p, 1, 1)  # pass-major: (E, p * m, H, P)
                acc += ensemble_median(encoder.head(rep, mask)).reshape(p, m, -1).sum(0)
                done += p
            out[spots.cpu()] = (acc / n_mc_samples).float().cpu()
        return out.numpy()
