"""The DLPFC Visium section 151676 bundled with the package."""

from __future__ import annotations

from anndata import AnnData

from ._bundled import read_bundled

_FILE = "dlpfc_151676.h5ad"


def dlpfc_151676() -> AnnData:
    """Human dorsolateral prefrontal cortex, 10x Visium section 151676, with manual layer annotation.

    One of the 12 DLPFC sections of Maynard et al. (2021), "Transcriptome-scale spatial gene
    expression in the human dorsolateral prefrontal cortex", *Nature Neuroscience* 24, 425-436
    :cite:p:`Maynard2021` (distributed by spatialLIBD), the benchmark of the AESTETIK paper
    :cite:p:`Nonchev2024`.
    The file ships with the package, so no download is needed; every call returns a new object.

    Returns
    -------
    An :class:`~anndata.AnnData` of 3460 spots x 7319 genes with

    `X` : :class:`~scipy.sparse.csr_matrix`
        Library-size-normalised counts, float32 (not log-transformed).
    `var['gene_ids']` : str
        Ensembl gene identifiers (also the ``var_names``).
    `obs['array_row']`, `obs['array_col']` : int
        Visium (hexagonal) lattice coordinates.
    `obs['ground_truth']` : categorical
        Manual annotation: ``'Layer_1'`` .. ``'Layer_6'``, ``'WM'`` (white matter), and ``'NA'`` for
        the few unannotated spots (a category, not a missing value).
    `obsm['spatial']` : ndarray
        Spot centres in full-resolution image pixels (x, y).
    `uns['spatial']['151676']` : dict
        ``images['lowres']`` (600 x 600 x 3 uint8 H&E image), ``scalefactors`` (``tissue_lowres_scalef``,
        ``spot_diameter_fullres``, ...) and ``metadata``, as read by :func:`scanpy.read_visium`.
    `uns['layer_order']` : ndarray
        The 7 layers from the pia to the white matter.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()
    >>> adata.shape
    (3460, 7319)
    >>> list(adata.uns["spatial"])
    ['151676']
    """
    return read_bundled(_FILE)
