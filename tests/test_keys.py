"""Every public function refuses names that h5ad / zarr cannot write, before touching anything."""

from __future__ import annotations

import inspect
import sys
import types
import warnings

import anndata as ad
import numpy as np
import pytest
from _data import make_small

import aestetik as ae
from aestetik._spatialdata import is_spatialdata
from aestetik._validation import assert_key_name

PUBLIC = {
    "pp.prepare": ae.pp.prepare,
    "pp.morphology": ae.pp.morphology,
    "tl.fit": ae.tl.fit,
    "tl.cluster": ae.tl.cluster,
    "tl.consensus": ae.tl.consensus,
    "tl.ablation": ae.tl.ablation,
    "tl.embed": ae.tl.embed,
    "tl.load_model": ae.tl.load_model,
    "tl.save_model": ae.tl.save_model,
    "pl.spatial": ae.pl.spatial,
    "pl.loss": ae.pl.loss,
    "pl.ablation": ae.pl.ablation,
    "pl.n_clusters": ae.pl.n_clusters,
    "pl.consensus": ae.pl.consensus,
}

# (function, the key argument, other arguments); all of them would fail later on `make_small()`, so a refusal
# naming the key shows that the key was checked first.
CASES = [
    ("pp.prepare", "key_added", {}),
    ("pp.morphology", "key_added", {}),
    ("tl.fit", "key_added", {}),
    ("tl.fit", "prepare_key", {}),
    ("tl.cluster", "key_added", {}),
    ("tl.cluster", "prepare_key", {}),
    ("tl.consensus", "key_added", {}),
    ("tl.ablation", "key_added", {}),
    ("tl.embed", "key", {}),
    ("tl.embed", "key_added", {}),
    ("tl.load_model", "key", {"path": "model.pt"}),
    ("tl.save_model", "key", {"path": "model.pt"}),
    ("pl.loss", "key", {}),
    ("pl.ablation", "key", {}),
    ("pl.n_clusters", "key", {}),
    ("pl.consensus", "key", {}),
]


def _state(adata: ad.AnnData) -> tuple:
    return (
        list(adata.obs.columns),
        {k: np.asarray(v).copy() for k, v in adata.obsm.items()},
        sorted(adata.uns),
        adata.X.copy(),
    )


@pytest.mark.parametrize(("name", "argument", "extra"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("bad", ["a/b", "", ".."])
def test_unwritable_key_refused_before_anything(name, argument, extra, bad, tmp_path):
    adata = make_small()
    before = _state(adata)
    extra = {k: tmp_path / v if k == "path" else v for k, v in extra.items()}
    with pytest.raises(ValueError, match=rf"`{argument}={bad!r}` cannot be written.*h5ad or zarr.*Pass another name"):
        PUBLIC[name](adata, **extra, **{argument: bad})
    after = _state(adata)
    assert after[0] == before[0]
    assert after[2] == before[2]
    assert after[1].keys() == before[1].keys()
    assert all(np.array_equal(after[1][k], before[1][k]) for k in before[1])
    assert np.array_equal(after[3], before[3])
    assert list(tmp_path.iterdir()) == []


def test_refused_names_are_those_h5ad_or_zarr_cannot_write(tmp_path):
    """What ``assert_key_name`` refuses fails a write/read round trip; what it lets through survives one."""

    def survives(key: str, where: str) -> bool:
        adata = ad.AnnData(np.zeros((3, 2), dtype=np.float32))
        if where == "obs":
            adata.obs[key] = [1, 2, 3]
        elif where == "obsm":
            adata.obsm[key] = np.ones((3, 2))
        else:
            adata.uns[key] = {"p": 1}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # anndata's notes on the zarr format version
                for i, (write, read) in enumerate(((adata.write_h5ad, ad.read_h5ad), (adata.write_zarr, ad.read_zarr))):
                    path = tmp_path / f"{len(list(tmp_path.iterdir()))}_{i}"
                    write(path)
                    back = read(path)
                    stored = back.obs.columns if where == "obs" else getattr(back, where)
                    if key not in stored:
                        return False
        except Exception:  # noqa: BLE001 - any failure of the round trip counts
            return False
        return True

    for key in ["a/b", "..", "a\\b", "_index"]:
        with pytest.raises(ValueError, match="cannot be written"):
            assert_key_name(key, name="key_added")
        assert not all(survives(key, where) for where in ("obs", "obsm", "uns")), key
    with pytest.raises(ValueError, match="empty name"):
        assert_key_name("", name="key_added")
    for key in ["aestetik", "X_aestetik", "my key.v2", "__x", "é"]:
        assert_key_name(key, name="key_added")
        assert all(survives(key, where) for where in ("obs", "obsm", "uns")), key
    with pytest.raises(TypeError, match="`key_added` must be a string"):
        assert_key_name(3, name="key_added")


def test_suggested_name_is_writable():
    with pytest.raises(ValueError, match=r"e\.g\. `key_added='my_run'`"):
        assert_key_name("my/run", name="key_added")
    with pytest.raises(ValueError, match=r"e\.g\. `key_added='aestetik'`"):
        assert_key_name("..", name="key_added")


def test_public_list_is_complete():
    found = {f"{mod}.{name}" for mod in ("pp", "tl", "pl") for name in getattr(ae, mod).__all__}
    assert found == set(PUBLIC), "add new public functions to PUBLIC (and give them `@spatialdata_input`)"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_function_takes_table_key(name):
    func = PUBLIC[name]
    param = inspect.signature(func).parameters["table_key"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY
    assert param.default == "table"
    assert "table_key\n    When ``adata`` is a ``spatialdata.SpatialData``" in func.__doc__


def test_spatialdata_is_recognised_without_importing_it(monkeypatch):
    """A non-SpatialData never imports spatialdata; a SpatialData without spatialdata installed says what to install."""
    monkeypatch.setitem(sys.modules, "spatialdata", None)  # `import spatialdata` now raises ImportError
    adata = make_small()
    ae.tl.cluster(adata, use_rep="X_pca", n_clusters=3, refine=False, show_progress_bar=False)
    assert "aestetik" in adata.obs
    fake = types.new_class("SpatialData")
    fake.__module__ = "spatialdata._core.spatialdata"
    assert is_spatialdata(fake())
    assert not is_spatialdata(adata)
    with pytest.raises(ImportError, match=r'pip install "aestetik\[spatialdata\]"'):
        ae.tl.cluster(fake(), n_clusters=3)
