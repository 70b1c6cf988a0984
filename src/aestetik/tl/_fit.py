from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._keys import Key
from aestetik._model._train import fit_prepared
from aestetik._records import read_prepared
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import assert_not_view

if TYPE_CHECKING:
    import os

    from anndata import AnnData
    from lightning.pytorch.strategies import Strategy


@spatialdata_input
@doc_params
def fit(
    adata: AnnData,
    *,
    morphology_weight: float | None = None,
    total_weight: float = 3.0,
    max_epochs: int = 100,
    batch_size: int | None = None,
    latent_dim: int = 16,
    c_hid: int = 64,
    kernel_size: int = 3,
    dropout: float = 0.3,
    n_ensemble: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    rec_alpha: float = 1.0,
    triplet_alpha: float = 1.0,
    n_repeats: int = 1,
    multi_triplet: bool = True,
    partners: Literal["all", "batch"] = "all",
    n_mc_samples: int = 100,
    tol: float = 0.05,
    random_state: int = 0,
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    strategy: str | Strategy = "auto",
    num_nodes: int = 1,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    prepare_key: str = "aestetik",
    check_memory: bool = True,
    show_progress_bar: bool = True,
    key_added: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Train AESTETIK and embed every spot.

    Trains the convolutional autoencoder ensemble on the lattice windows built by
    :func:`aestetik.pp.prepare` with a per-modality L1 reconstruction and multi-triplet loss
    :cite:p:`Nonchev2024`, then writes the Monte-Carlo dropout embedding (mean over ``n_mc_samples``
    stochastic passes). The data live on the training device; triplet partners are drawn with tensor
    ops and each distinct spot of a step is convolved once; anchors, positives and negatives are still
    normalised as separate batch-norm batches and every occurrence gets its own dropout mask, exactly as
    in the reference implementation.

    Parameters
    ----------
    {adata}
    morphology_weight
        Weight ``w_m`` of the morphology terms; ``w_t = total_weight - w_m``. Default: 1.5 when
        ``prepare`` was given a morphology representation, else 0. A modality whose pseudo-labels
        collapsed to one cluster gets weight 0.
    total_weight
        ``w_t + w_m``.
    max_epochs
        Epochs at most; every spot is an anchor once per epoch. Training stops earlier once the embedding
        has settled (``tol``).
    batch_size
        Anchors per step; default ``min(8192, n_obs)``.
    latent_dim
        Embedding size.
    c_hid
        Convolution channels.
    kernel_size
        Convolution and max-pool kernel (shrinks to ``w - 1`` when not smaller than the window).
    dropout
        Channel dropout probability (training and Monte-Carlo embedding).
    n_ensemble
        Encoder and decoder units; the embedding is their element-wise median. ``None`` (default): 3, as
        published, on 1,000 spots or more; on fewer, enough units to see 3,000 windows per epoch together, an odd
        number, at most 9 (500 spots: 7; 346: 9), so that the embedding of a small section changes less with the seed (see
        the method page). The units used are recorded in ``uns[key_added]['fit']['params']['n_ensemble']``.
    lr
        Adam (amsgrad) learning rate.
    weight_decay
        Adam weight decay.
    rec_alpha
        Coefficient of the reconstruction terms.
    triplet_alpha
        Coefficient of the triplet terms.
    n_repeats
        Triplet partners per other cluster.
    multi_triplet
        One negative from every other cluster (default) or from one random other cluster.
    partners
        Where triplet partners come from: ``'all'`` spots (the published method) or the anchors of the same
        ``'batch'``. Both draw from the same distribution when one batch holds the whole section (up to
        ``batch_size`` spots, e.g. Visium); on larger data ``'batch'`` convolves at most ``batch_size`` spots per
        step instead of up to ``batch_size * (1 + partners per anchor)``, so a step takes less time and memory.
        Choose ``'batch'`` for sections of many batches that are slow or do not fit with ``'all'``, and check the
        domains: the embedding may still separate domains that k-means no longer finds; clustering into more
        domains than expected then shows whether each lies within one true domain (see the method page).
    n_mc_samples
        Monte-Carlo dropout passes averaged into the embedding (0: one pass without dropout).
        Batch-norm normalises with the statistics over all spots (the reference's behaviour for a
        section of up to 8192 spots), so no embedding depends on how spots are batched. The default, 100,
        leaves a Monte-Carlo error of a few percent of the embedding's spread, below what ``tol`` lets
        training leave; the published method averages 1000.
    tol
        Stop training once the embedding has settled: every 10 epochs the embedding without dropout is
        compared with the one 10 epochs before, and training stops when the spots moved by less than ``tol``
        of the embedding's spread (norm of the change over the norm of the centred embedding). The loss
        still falls slowly after that, but the arrangement of the spots that the domains are cut from no
        longer changes. Training also stops at such a check when that epoch's triplet terms fell under ``tol`` of
        the first epoch's: the pseudo-labels are learned, and further epochs fit the reconstruction alone, which
        on a few hundred spots spreads the domains apart again (see the method page). ``0`` trains all
        ``max_epochs``, as the published method (with ``n_mc_samples=1000``). The record holds
        ``epochs_trained``; the log says which criterion stopped training.
    {random_state}
    accelerator
        Lightning accelerator (``'auto'``, ``'cpu'``, ``'gpu'``, ...).
    devices
        Lightning devices: how many (or which) per node. More than one trains with DDP: each process holds the
        whole section and trains on its share of every epoch's anchors (``batch_size`` anchors per process and
        step, so an epoch takes ``devices * num_nodes`` times fewer steps); Lightning averages the gradients.
        ``'auto'``: every device Lightning finds. See :doc:`/devices` for which ``strategy`` to use when.
    strategy
        Lightning strategy. ``'auto'``: one process for one device. Several devices from a script or notebook on
        one machine: ``'ddp_spawn'`` (or ``'ddp_notebook'``, which forks, in a notebook on CPUs or before CUDA is
        initialised), and the embedding comes back to this process. A job that starts one process per device
        (SLURM, torchrun): ``'ddp'``; global rank 0 embeds and writes, the other ranks write nothing. Batch-norm
        statistics are per process (each normalises its own batch, as one process does); the embedding
        normalises with the statistics over all spots.
    num_nodes
        Machines of a multi-node job (``strategy='ddp'``).
    checkpoint_path
        Folder to write a checkpoint to (``last.ckpt``, Lightning's format, overwritten) every
        ``checkpoint_every`` epochs, with the loss history and the random streams, so that a resumed fit equals an
        uninterrupted one. ``None``: nothing is written.
    checkpoint_every
        Epochs between checkpoints.
    resume
        Continue from the checkpoint in ``checkpoint_path`` (a fit with other parameters than ``max_epochs`` and ``tol`` is
        refused); start afresh when there is none yet, so that a requeued job can always pass ``resume=True``.
    {prepare_key}
    check_memory
        Estimate the memory training and embedding need before starting, and refuse with a
        :class:`MemoryError` that names the estimate and the largest ``batch_size`` that fits when it exceeds
        90% of the free memory of the training device (host memory on CPU). The estimate is stored in the record.
    {show_progress_bar}
    key_added
        The embedding goes to ``obsm['X_' + key_added]``, the record to ``uns[key_added]['fit']``.
    {copy}

    Returns
    -------
    {returns_copy} Sets:

    `adata.obsm['X_' + key_added]` : ndarray (n, latent_dim), float32
        The embedding; use it with ``sc.pp.neighbors(adata, use_rep='X_aestetik')``.
    `adata.uns[key_added]['fit']` : dict
        ``params`` (resolved, with the device type, the ``strategy``, the ``world_size`` (processes), whether
        the fit ``resumed`` from a checkpoint and the ``epochs_trained``), calibrated ``transcriptomics_weight`` and
        ``morphology_weight``, ``history`` (per-step total loss and its four parts, with ``epoch``),
        ``weights`` (the network's state dict as arrays) and ``seconds``.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()
    >>> ae.pp.prepare(adata)
    >>> ae.tl.fit(adata)
    >>> adata.obsm["X_aestetik"].shape
    (3460, 16)
    """
    assert_not_view(adata, copy=copy)
    prepared = read_prepared(adata, prepare_key)
    fitted, embedding = fit_prepared(
        prepared,
        morphology_weight=morphology_weight,
        total_weight=total_weight,
        max_epochs=max_epochs,
        batch_size=batch_size,
        latent_dim=latent_dim,
        c_hid=c_hid,
        kernel_size=kernel_size,
        dropout=dropout,
        n_ensemble=n_ensemble,
        lr=lr,
        weight_decay=weight_decay,
        rec_alpha=rec_alpha,
        triplet_alpha=triplet_alpha,
        n_repeats=n_repeats,
        multi_triplet=multi_triplet,
        partners=partners,
        n_mc_samples=n_mc_samples,
        tol=tol,
        random_state=random_state,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        resume=resume,
        check_memory=check_memory,
        show_progress_bar=show_progress_bar,
    )
    if embedding is None:  # a rank of a per-rank launch other than global rank 0: trained, nothing to write
        logg.info("    trained; global rank 0 writes the embedding")
        return adata.copy() if copy else None

    adata = adata.copy() if copy else adata
    adata.obsm[Key.embedding(key_added)] = embedding
    uns = dict(adata.uns.get(key_added, {}))
    uns["fit"] = fitted.record()
    adata.uns[key_added] = uns
    logg.info(
        "    wrote the embedding",
        deep=f"added\n    'obsm[{Key.embedding(key_added)!r}]', 'uns[{key_added!r}][\"fit\"]'",
    )
    return adata if copy else None
