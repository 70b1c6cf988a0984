"""Memory estimate of training and embedding, and the memory available on the training device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._ensemble import conv_shapes, effective_kernel

FLOAT = 4
#: The embedding keeps the per-spot convolution summaries of all spots when they take at most this many bytes.
CACHE_BYTES = 1 << 30
#: Headroom: refuse when the estimate exceeds this share of the available memory.
USABLE_SHARE = 0.9


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed by :func:`aestetik.tl.fit` (an upper estimate of the tensors it allocates)."""

    data: int  # features, window medians, window index and embedding, held for the whole run
    step: int  # one training step (forward and backward)
    embed: int  # the Monte-Carlo embedding

    @property
    def total(self) -> int:
        """Peak: the data plus the larger of a training step and the embedding."""
        return self.data + max(self.step, self.embed)


def estimate_fit_memory(
    *,
    n_obs: int,
    n_channels: int,
    window_size: int,
    batch_size: int,
    n_partners: int,
    n_ensemble: int,
    c_hid: int,
    latent_dim: int,
    kernel_size: int,
    cache_bytes: int,
    within_batch: bool = False,
    n_mc_samples: int = 1000,
    chunk_spots: int = 8192,
    max_elements: int = 1 << 24,
) -> MemoryEstimate:
    """Estimate the memory of training and embedding (see :class:`MemoryEstimate`).

    ``n_partners`` is the number of triplet partners per anchor over both modalities; ``within_batch`` when
    they are drawn from the anchors of the step (``fit(partners='batch')``). The counts follow
    :class:`aestetik._model._module.AestetikModule`: the convolution of the distinct spots of a step (at most
    ``min(n_obs, occurrences)``) through their distinct lattice cells (:mod:`aestetik._model._lattice_conv`), its
    output kept with its gradient, five batch-norm roles, per-occurrence pooled features and masks, the
    anchors' windows and the decoder's member reconstructions.
    """
    w2 = window_size * window_size
    k = effective_kernel(window_size, kernel_size)
    side, pooled = conv_shapes(window_size, k)
    hidden = n_ensemble * c_hid
    window_bytes = n_channels * w2 * FLOAT
    data = n_obs * (2 * n_channels * FLOAT + w2 * 4 + latent_dim * FLOAT * 2)

    def lattice(spots: int) -> int:  # cell patches and their keys, patch values of the distinct cells
        positions = spots * side * side
        cells = min(positions, n_obs * k * k)
        return positions * (k * k * (4 + FLOAT) + 8 * 4) + cells * n_channels * k * k * FLOAT * 2

    occurrences = batch_size * (1 + n_partners)
    distinct = min(n_obs, batch_size if within_batch else occurrences)
    gathered = lattice(distinct)
    conv = distinct * hidden * side * side * FLOAT * 3  # output, its gradient, the square's temporary
    roles = distinct * hidden * pooled * pooled * FLOAT * 12  # max/min maps, 5 roles with gradients
    per_occurrence = (
        occurrences * hidden * pooled * pooled * FLOAT * 5 + occurrences * n_ensemble * latent_dim * FLOAT * 4
    )
    decoder = batch_size * n_ensemble * n_channels * w2 * FLOAT * 8 + batch_size * window_bytes * 2
    step = gathered + conv + roles + per_occurrence + decoder

    chunk = min(chunk_spots, n_obs)
    summaries = n_obs * hidden * (2 + 2 * pooled * pooled) * FLOAT
    kept = summaries if summaries <= cache_bytes else 0
    passes = min(max_elements, max(1, n_mc_samples) * chunk * hidden * pooled * pooled)  # elements per MC batch
    embed = kept + lattice(chunk) + chunk * hidden * side * side * FLOAT * 2 + 4 * passes * FLOAT
    return MemoryEstimate(data=int(data), step=int(step), embed=int(embed))


def largest_batch(available: int, **sizes) -> int:
    """The largest ``batch_size`` (up to ``sizes['batch_size']``) whose estimate fits in ``available`` bytes; 0 if none."""
    lo, hi = 0, int(sizes.pop("batch_size"))
    while lo < hi:  # the estimate grows with the batch size
        mid = (lo + hi + 1) // 2
        if estimate_fit_memory(batch_size=mid, **sizes).total <= USABLE_SHARE * available:
            lo = mid
        else:
            hi = mid - 1
    return lo


def available_memory(device) -> int | None:
    """Free memory on ``device`` in bytes (CUDA: free device memory; CPU: the OS's available memory)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with Path("/proc/meminfo").open() as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable string."""
    if n < 1 << 20:
        return f"{n / 1024:.0f} KiB"
    if n < 1 << 30:
        return f"{n / (1 << 20):.0f} MiB"
    return f"{n / (1 << 30):.1f} GiB"


def n_partners_per_anchor(
    n_clusters: tuple[int, int], weights: tuple[float, float], *, multi_triplet: bool, n_repeats: int
) -> int:
    """Triplet partners drawn per anchor over both modalities (positives and negatives)."""
    total = 0
    for k, w in zip(n_clusters, weights, strict=True):
        if w > 0 and k > 1:
            total += 2 * n_repeats * ((k - 1) if multi_triplet else 1)
    return total
