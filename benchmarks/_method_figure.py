"""The method figure of ``figures.py``: its inputs from the bundled section, and the network and loss as boxes."""

from __future__ import annotations

import numpy as np
from matplotlib.patches import FancyBboxPatch


def method_inputs(window_size: int = 7) -> dict:
    """What :func:`method` draws from the bundled section: lattice, PC 1, the centre spot, its window and image."""
    from sklearn.decomposition import PCA

    import aestetik as ae
    from aestetik._space._grid import minmax_scale, window_index

    adata = ae.datasets.dlpfc_151676()
    lattice = adata.obs[["array_row", "array_col"]].to_numpy(np.int64)
    x = np.log1p(adata.X.toarray())
    genes = np.argsort(-x.var(axis=0), kind="stable")[:2000]
    pcs = PCA(n_components=15, random_state=0).fit_transform(x[:, genes])
    scaled = minmax_scale(pcs.astype(np.float32))[:, 0]  # the window's first channel
    middle = np.median(lattice, axis=0)
    centre = int(np.argmin(np.abs(lattice - middle).sum(axis=1)))
    index = window_index(lattice, np.zeros(len(lattice), np.int64), window_size)[centre].reshape(window_size, -1)
    values = np.where(index >= 0, scaled[np.maximum(index, 0)], np.nan)
    filled = np.where(np.isnan(values), np.nanmedian(values), values)
    lib = next(iter(adata.uns["spatial"]))
    spatial = adata.uns["spatial"][lib]
    scale = spatial["scalefactors"]["tissue_lowres_scalef"]
    return {
        "lattice": lattice, "pc1": scaled, "centre": centre, "index": index, "window": filled,
        "image": spatial["images"]["lowres"], "xy": adata.obsm["spatial"] * scale,
        "spot_px": spatial["scalefactors"]["spot_diameter_fullres"] * scale,
    }  # fmt: skip


def _box(ax, x, y, w, h, text, colour, size=7.5):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=colour, ec="0.3", lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, linespacing=1.35)


def _arrow(ax, a, b, **kw):
    ax.annotate("", b, a, arrowprops={"arrowstyle": "-|>", "color": "0.3", "lw": 1.0, "shrinkA": 0, "shrinkB": 0, **kw})


def network(ax) -> None:
    """Boxes and arrows: window -> encoder units -> median z -> decoder units -> median reconstruction; the loss."""
    ax.set(xlim=(0, 10), ylim=(0, 6.2))
    ax.axis("off")
    ax.set_title("network (ensemble of 3 units, element-wise median) and loss", fontsize=9.5)
    enc = "Conv2d $3{\\times}3$ → 64\nBatchNorm2d\nDropout2d 0.3\nReLU\nMaxPool 3, stride 3\nLinear → 16"
    dec = "Linear, Unflatten\nReLU, upsample\nDropout2d 0.3\nConvTranspose2d\n$3{\\times}3$ → $C$\nBatchNorm2d\nSigmoid"
    for k in (2, 1, 0):  # three stacked units, the front one labelled
        _box(ax, 1.55 + 0.09 * k, 2.75 + 0.11 * k, 2.0, 2.6, "" if k else enc, "#d7e5f7", size=7)
        _box(ax, 5.35 + 0.09 * k, 2.75 + 0.11 * k, 2.0, 2.6, "" if k else dec, "#fde3c8", size=7)
    ax.text(2.65, 5.62, "3 encoder units", ha="center", fontsize=8)
    ax.text(6.45, 5.62, "3 decoder units", ha="center", fontsize=8)
    _box(ax, 0.02, 3.5, 1.2, 1.1, "window $x_a$\n$C \\times w \\times w$\n$C = d_t + d_m$", "#eef3fb", size=7.5)
    _box(ax, 3.95, 3.6, 1.0, 0.9, "median\n$z_a \\in \\mathbb{R}^{16}$", "#c9e7cf", size=7.5)
    _box(ax, 8.35, 3.5, 1.63, 1.1, "median:\nreconstruction\n$\\hat x_a$, $C \\times w \\times w$", "#fdf1e4", size=7.5)
    for a, b in (((1.22, 4.05), (1.55, 4.05)), ((3.55, 4.05), (3.95, 4.05)), ((4.95, 4.05), (5.35, 4.05))):
        _arrow(ax, a, b)
    _arrow(ax, (7.55, 4.05), (8.35, 4.05))
    mc = "embedding:\nmean of 1000\nMC-dropout\npasses"
    ax.text(4.45, 4.62, mc, ha="center", va="bottom", fontsize=6.5, color="0.3")
    trip = (
        "multi-triplet, per modality, on its pseudo-labels ($K$ clusters):\n"
        "positives $p_i$ from the anchor's cluster, one negative $n_i$\nfrom each of the $K-1$ others, "
        "$\\max(\\|z_a - z_{p_i}\\| - \\|z_a - z_{n_i}\\| + 1, 0)$"
    )
    _box(ax, 0.02, 1.15, 5.6, 1.2, trip, "#c9e7cf", size=7)
    _box(ax, 5.9, 1.15, 4.08, 1.2, "reconstruction: L1 between $x_a$ and $\\hat x_a$\non the transcriptomics "
         "($\\mathrm{L1}_t$)\nand the morphology channels ($\\mathrm{L1}_m$)", "#fdf1e4", size=7)  # fmt: skip
    _arrow(ax, (4.45, 3.6), (3.6, 2.35))
    _arrow(ax, (9.16, 3.5), (8.6, 2.35))
    loss = (
        "$\\mathcal{L} = w_t\\,(\\alpha_r\\,\\mathrm{L1}_t + \\alpha_\\tau\\,\\mathrm{Trip}_t)"
        " + w_m\\,(\\alpha_r\\,\\mathrm{L1}_m + \\alpha_\\tau\\,\\mathrm{Trip}_m)$"
    )
    _box(ax, 0.02, 0.05, 9.96, 0.8, loss, "#f2f2f2", size=10.5)
    _arrow(ax, (2.8, 1.15), (2.8, 0.85))
    _arrow(ax, (7.9, 1.15), (7.9, 0.85))
