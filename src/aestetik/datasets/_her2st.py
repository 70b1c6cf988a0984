"""The HER2+ breast tumour section A1 bundled with the package (legacy ST, pathologist regions, H&E image)."""

from __future__ import annotations

from anndata import AnnData

from ._bundled import read_bundled

_FILE = "her2st_a1.h5ad"


def her2st_a1() -> AnnData:
    """HER2-positive breast tumour, section A1 (legacy ST), with pathologist regions and its H&E image.

    Spatial transcriptomics (100 µm spots at 200 µm pitch) of a HER2-positive breast tumour by Andersson et al.
    (2021), "Spatial deconvolution of HER2-positive breast cancer delineates tumor-associated cell type
    interactions", *Nature Communications* 12, 6012 :cite:p:`Andersson2021`, whose pathologist annotated the
    regions of every spot. The spots have no ``array_row``/``array_col`` columns: prepare it with
    ``aestetik.pp.prepare(adata, coords=None)``, which detects the lattice from ``obsm['spatial']``. The file ships
    with the package, so no download is needed; every call returns a new object.

    Returns
    -------
    An :class:`~anndata.AnnData` of 346 spots x 15045 genes with

    `X` : :class:`~scipy.sparse.csr_matrix`
        Raw counts (whole numbers), float32.
    `obs['ground_truth']` : categorical
        Pathologist region: ``'invasive cancer'``, ``'cancer in situ'``, ``'connective tissue'``,
        ``'adipose tissue'``, ``'immune infiltrate'``, or ``'NA'`` (undetermined: left out of every ARI).
    `obs['array_x']`, `obs['array_y']` : int
        The spot's position on the ST array, as in the source's spot ids ``'XxY'``.
    `obsm['spatial']` : ndarray
        Spot centres (x, y) in full-resolution pixels, float64.
    `uns['spatial']['her2st_A1']` : dict
        ``images['hires']`` (the H&E, 2138 x 2000 px, about 31 px per spot; the background is masked and a
        thumbnail of the annotated image sits in its top-right corner, away from the spots) and ``scalefactors``
        (``tissue_hires_scalef``, ``spot_diameter_fullres``), as squidpy reads them.
    `uns['source']` : str
        Where the data come from.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.her2st_a1()
    >>> adata.shape
    (346, 15045)
    >>> ae.pp.prepare(adata, coords=None, n_clusters=5)
    """
    return read_bundled(_FILE)
