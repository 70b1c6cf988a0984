"""The STARmap section of mouse medial prefrontal cortex bundled with the package (single cells, no image)."""

from __future__ import annotations

from anndata import AnnData

from ._bundled import read_bundled

_FILE = "starmap_bz5.h5ad"


def starmap_bz5() -> AnnData:
    """Mouse medial prefrontal cortex, STARmap single cells (section BZ5), with the cortical layer of each cell.

    In situ sequencing of 166 genes in 1,049 cells of one section by Wang et al. (2018), "Three-dimensional intact-tissue
    sequencing of single-cell transcriptional states", *Science* 361, eaat5691 :cite:p:`Wang2018`, as distributed
    with BASS (Li & Zhou 2022), which annotated every cell with its cortical layer. Positions are irregular (single
    cells) and there is no tissue image: prepare it with ``aestetik.pp.prepare(adata, coords='cells',
    morphology_key=None)``. The file ships with the package, so no download is needed; every call returns a new
    object.

    Returns
    -------
    An :class:`~anndata.AnnData` of 1049 cells x 166 genes with

    `X` : :class:`~scipy.sparse.csr_matrix`
        Raw counts (whole numbers), float32.
    `obs['ground_truth']` : categorical
        Cortical layer as annotated in the source: ``'L1'`` .. ``'L4'`` (four layers, every cell annotated).
    `obs['cell_type']` : categorical
        Cell type (15 types, e.g. ``'eL2/3'``, ``'Astro'``, ``'Oligo'``).
    `obsm['spatial']` : ndarray
        Cell centres (x, y), float64, in the units of the source (pixels of the STARmap images).
    `uns['source']` : str
        Where the data come from.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.starmap_bz5()
    >>> adata.shape
    (1049, 166)
    >>> ae.pp.prepare(adata, coords="cells", morphology_key=None, n_clusters=4)
    """
    return read_bundled(_FILE)
