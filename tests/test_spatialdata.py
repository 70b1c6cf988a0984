"""Public functions on a SpatialData: its table is read and written as an AnnData, the image from its elements."""

from __future__ import annotations

import inspect

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from _data import FAST_FIT
from matplotlib.axes import Axes

import aestetik as ae

sd = pytest.importorskip("spatialdata")
from spatialdata.models import Image2DModel, ShapesModel, TableModel  # noqa: E402
from spatialdata.transformations import Affine, Scale, Sequence, Translation  # noqa: E402

LIBRARY = "151676"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _section():
    """A crop of the bundled section (about 700 spots) with the region / instance columns of a SpatialData table."""
    adata = ae.datasets.dlpfc_151676()
    adata = adata[(adata.obs["array_row"] < 16).to_numpy()].copy()
    # the lowres image upsampled 3x: spots 13 px wide, so that `morphology_key='auto'` computes from it (not under 10 px)
    meta = adata.uns["spatial"][LIBRARY]
    meta["images"]["lowres"] = np.repeat(np.repeat(meta["images"]["lowres"], 3, axis=0), 3, axis=1)
    meta["scalefactors"]["tissue_lowres_scalef"] *= 3
    adata.obs["region"] = pd.Categorical([LIBRARY] * adata.n_obs)
    adata.obs["spot_id"] = np.arange(adata.n_obs)
    return adata


def _spatialdata(adata, *, crop: tuple[int, int] = (0, 0)):
    """``adata`` as spatialdata-io writes Visium: table, circles in full-resolution pixels, the lowres image.

    ``crop`` (rows, columns) cuts that many pixels off the top / left of the image, moved by a translation.
    """
    meta = adata.uns["spatial"][LIBRARY]
    s = meta["scalefactors"]["tissue_lowres_scalef"]
    table = adata.copy()
    del table.uns["spatial"]
    table = TableModel.parse(table, region=LIBRARY, region_key="region", instance_key="spot_id")
    radius = np.full(adata.n_obs, meta["scalefactors"]["spot_diameter_fullres"] / 2)
    shapes = ShapesModel.parse(
        np.asarray(adata.obsm["spatial"]), geometry=0, radius=radius, index=np.arange(adata.n_obs)
    )
    pixels = meta["images"]["lowres"][crop[0] :, crop[1] :]
    to_global = Scale([1 / s, 1 / s], axes=("y", "x"))
    if crop != (0, 0):
        to_global = Sequence([Translation([crop[0], crop[1]], axes=("y", "x")), to_global])
    image = Image2DModel.parse(np.moveaxis(pixels, -1, 0), dims=("c", "y", "x"), transformations={"global": to_global})
    return sd.SpatialData(images={"lowres": image}, shapes={LIBRARY: shapes}, tables={"table": table})


def _assert_same(table, adata, keys_obs, keys_obsm):
    for key in keys_obs:
        assert table.obs[key].equals(adata.obs[key]), key
    for key in keys_obsm:
        np.testing.assert_array_equal(table.obsm[key], adata.obsm[key], err_msg=key)


@pytest.fixture(scope="module")
def flow():
    """The same prepare (morphology from the image) -> fit -> cluster on the AnnData and on the SpatialData."""
    adata = _section()
    sdata = _spatialdata(adata)
    calls = [
        (ae.pp.prepare, {"clustering_method": "kmeans", "n_clusters": 4}),
        (ae.tl.fit, FAST_FIT),
        (ae.tl.cluster, {"n_clusters": 4, "show_progress_bar": False}),
    ]
    for func, kwargs in calls:
        assert func(adata, **kwargs) is None
        assert func(sdata, **kwargs) is None
    return adata, sdata


def test_flow_writes_the_table_as_the_anndata(flow):
    adata, sdata = flow
    table = sdata.tables["table"]
    assert set(table.obsm) == set(adata.obsm)
    assert set(table.obs.columns) == set(adata.obs.columns)
    assert set(table.uns) == {*adata.uns, "spatialdata_attrs"} - {"spatial"}
    # the image is read in both flows; whether its features train (their spatial coherence) is decided the same way
    morphology_labels = ["aestetik_morphology_cluster"] if "aestetik_morphology_cluster" in adata.obs else []
    _assert_same(
        table,
        adata,
        ["aestetik", "aestetik_transcriptomics_cluster", "morphology_outside", *morphology_labels],
        ["X_morphology", "X_pca", "aestetik_input", "aestetik_lattice", "aestetik_grid", "X_aestetik", "spatial"],
    )
    coherence = adata.uns["aestetik"]["prepare"]["morphology_coherence"]
    assert set(coherence) == {"transcriptomics", "morphology"}
    for key, value in coherence.items():
        assert table.uns["aestetik"]["prepare"]["morphology_coherence"][key] == pytest.approx(value)
    assert table.uns["morphology"]["libraries"][LIBRARY]["scalef"] == pytest.approx(
        adata.uns["morphology"]["libraries"][LIBRARY]["scalef"]
    )
    assert table.uns["aestetik"]["cluster"]["params"] == adata.uns["aestetik"]["cluster"]["params"]
    # the image and the spot centres were there for the call only
    assert "spatial" not in table.uns


def test_plot_reads_the_table_and_draws_the_image_element(flow):
    adata, sdata = flow
    ax = ae.pl.spatial(sdata, color="aestetik", ground_truth="ground_truth")
    reference = ae.pl.spatial(adata, color="aestetik", ground_truth="ground_truth")
    assert isinstance(ax, Axes)
    assert ax.get_title() == reference.get_title()
    assert "ARI" in ax.get_title()
    assert len(ax.images) == len(reference.images) == 1  # the H&E under the spots
    np.testing.assert_array_equal(ax.images[0].get_array(), reference.images[0].get_array())
    assert "spatial" not in sdata.tables["table"].uns
    assert isinstance(ae.pl.loss(sdata), Axes)


def test_prepare_reads_no_image_when_morphology_is_there(monkeypatch):
    import aestetik._spatialdata as S

    adata = _section()
    ae.pp.morphology(adata)
    sdata = _spatialdata(adata)

    def fail(*args, **kwargs):
        raise AssertionError

    monkeypatch.setattr(S, "image_inputs", fail)
    ae.pp.prepare(sdata, clustering_method="kmeans", n_clusters=4)
    assert sdata.tables["table"].uns["aestetik"]["prepare"]["params"]["morphology_key"] == "X_morphology"


def test_morphology_through_a_translation_equals_the_anndata():
    """A cropped image placed by a translation: same features as the whole image for the same spots."""
    adata = _section()
    ae.pp.morphology(adata)
    sdata = _spatialdata(adata, crop=(40, 30))
    ae.pp.morphology(sdata, image_key="lowres")
    np.testing.assert_array_equal(sdata.tables["table"].obsm["X_morphology"], adata.obsm["X_morphology"])


def test_morphology_with_a_rotated_image_uses_image_pixels():
    """An image that is not a scale of the coordinate system: centres and diameter are mapped onto its pixels."""
    adata = _section()
    ae.pp.morphology(adata)
    meta = adata.uns["spatial"][LIBRARY]
    s = meta["scalefactors"]["tissue_lowres_scalef"]
    sdata = _spatialdata(adata)
    # store the image transposed, with an affine (a swap of x and y) that maps it back
    pixels = np.moveaxis(meta["images"]["lowres"], -1, 0).transpose(0, 2, 1)
    swap = Affine(np.array([[0, 1 / s, 0], [1 / s, 0, 0], [0, 0, 1]]), input_axes=("x", "y"), output_axes=("x", "y"))
    image = Image2DModel.parse(pixels, dims=("c", "y", "x"), transformations={"global": swap})
    sdata = sd.SpatialData(images={"lowres": image}, shapes=dict(sdata.shapes), tables=dict(sdata.tables))
    ae.pp.morphology(sdata, method=lambda p: p.mean(axis=(1, 2)), n_components=2)
    ae.pp.morphology(adata, method=lambda p: p.mean(axis=(1, 2)), n_components=2, key_added="X_mean")
    lib = sdata.tables["table"].uns["morphology"]["libraries"][LIBRARY]
    assert lib["scalef"] == 1.0
    assert lib["spot_diameter_fullres"] == pytest.approx(meta["scalefactors"]["spot_diameter_fullres"] * s)
    # the mean colour of a transposed patch is that of the patch
    np.testing.assert_allclose(
        np.abs(sdata.tables["table"].obsm["X_morphology"]), np.abs(adata.obsm["X_mean"]), rtol=1e-4, atol=1e-4
    )


def test_copy_returns_a_new_spatialdata_and_leaves_the_input():
    adata = _section()
    sdata = _spatialdata(adata)
    before = sdata.tables["table"].copy()
    out = ae.pp.morphology(sdata, copy=True)
    assert isinstance(out, sd.SpatialData)
    assert out is not sdata
    assert out.images["lowres"] is sdata.images["lowres"]  # shared, not copied
    table = sdata.tables["table"]
    assert set(table.obsm) == set(before.obsm)
    assert set(table.uns) == set(before.uns)
    assert list(table.obs.columns) == list(before.obs.columns)
    new = out.tables["table"]
    assert "X_morphology" in new.obsm
    assert "morphology" in new.uns
    assert "spatial" not in new.uns
    np.testing.assert_array_equal(new.obsm["spatial"], before.obsm["spatial"])


def test_missing_table_refused_and_nothing_changed():
    adata = _section()
    sdata = _spatialdata(adata)
    with pytest.raises(KeyError, match=r"Did not find the table `sdata.tables\['spots'\]` \(found: 'table'\)"):
        ae.pp.prepare(sdata, table_key="spots")
    assert "aestetik_input" not in sdata.tables["table"].obsm


def test_failed_call_restores_the_table():
    adata = _section()
    sdata = _spatialdata(adata)
    before = sdata.tables["table"].copy()
    with pytest.raises(ValueError, match="n_components"):
        ae.pp.morphology(sdata, n_components=0)
    table = sdata.tables["table"]
    assert set(table.uns) == set(before.uns)
    np.testing.assert_array_equal(table.obsm["spatial"], before.obsm["spatial"])


def test_image_element_choice():
    adata = _section()
    sdata = _spatialdata(adata)
    image = sdata.images["lowres"]
    two = sd.SpatialData(
        images={"a": image, "b": image}, shapes=dict(sdata.shapes), tables={"table": sdata.tables["table"]}
    )
    with pytest.raises(ValueError, match=r"several images \('a', 'b'\); pass `image_key=`"):
        ae.pp.morphology(two)
    with pytest.raises(KeyError, match=r"`sdata.images\['c'\]` \(found: 'a', 'b'\)"):
        ae.pp.morphology(two, image_key="c")
    ae.pp.morphology(two, image_key="b")
    assert two.tables["table"].uns["morphology"]["params"]["image_key"] == "b"


def test_table_without_shapes_is_explained():
    adata = _section()
    sdata = _spatialdata(adata)
    with pytest.warns(UserWarning, match="not present in the SpatialData"):
        other = sd.SpatialData(
            images=dict(sdata.images),
            shapes={"elsewhere": ShapesModel.parse(np.zeros((1, 2)), geometry=0, radius=np.ones(1))},
            tables={"table": sdata.tables["table"]},
        )
    with pytest.raises(ValueError, match="exactly one shapes element of circles"):
        ae.pp.morphology(other)


def test_decorator_on_a_plain_function():
    """Signature and docstring gain ``table_key``; trained sections passed as SpatialData are read via the table."""
    from aestetik._spatialdata import spatialdata_input

    seen = {}

    @spatialdata_input
    def f(adata, *, model=None, key_added="x", copy=False):
        """Do something.

        Parameters
        ----------
        adata
            Data.
        model
            Trained data.
        key_added
            Name.
        copy
            Copy.

        Returns
        -------
        Nothing.
        """
        seen["adata"], seen["model"] = adata, model

    assert list(inspect.signature(f).parameters) == ["adata", "model", "key_added", "table_key", "copy"]
    assert "Name.\ntable_key\n    When ``adata`` is a ``spatialdata.SpatialData``" in f.__doc__
    assert f.__doc__.index("table_key") < f.__doc__.index("copy\n") < f.__doc__.index("Returns")
    adata = _section()
    one, two = _spatialdata(adata), _spatialdata(adata)
    f(one, model=two)
    assert seen["adata"] is one.tables["table"]
    assert seen["model"] is two.tables["table"]
    f(adata, model=two)
    assert seen["adata"] is adata
    assert seen["model"] is two.tables["table"]
    with pytest.raises(KeyError, match=r"`sdata.tables\['other'\]`"):
        f(adata, model=two, table_key="other")
