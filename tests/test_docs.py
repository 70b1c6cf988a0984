"""The documentation: the API page against ``__all__``, the docstrings, the tutorials page, the hosted build's
config, and an offline Sphinx build that fails on any warning of our own.

The build runs as ``AESTETIK_DOCS_OFFLINE=1 python -m sphinx -b html docs OUT`` on a copy of ``docs/`` (so
that autosummary's ``generated/`` and the thumbnails never touch the working tree): ``conf.py`` then leaves
``intersphinx_mapping`` empty, so references to the projects it maps (numpy, anndata, scanpy, torch, ...)
cannot resolve and are the only warnings allowed; everything else (a reference to an aestetik object, an
unknown name, a malformed docstring, a notebook that does not render) fails with the warning's text.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from itertools import product
from pathlib import Path

import pytest
import yaml
from _data import FAST_FIT, make_small

import aestetik as ae

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODULES = {"pp": ae.pp, "tl": ae.tl, "pl": ae.pl, "datasets": ae.datasets}
PUBLIC = [(name, f) for mod in MODULES.values() for name, f in ((n, getattr(mod, n)) for n in mod.__all__)]
IDS = [f"{f.__module__.split('.')[1]}.{name}" for name, f in PUBLIC]
ANNDATA_KEY = re.compile(r"adata\.(obs|obsm|uns)\[([^\]\[]+)\](?:\[([^\]\[]+)\])?")


# -- docstrings ------------------------------------------------------------------------------------------------


def sections(func) -> dict[str, list[str]]:
    """The numpydoc sections of ``func``'s docstring (after ``doc_params`` filled in the shared parameters)."""
    lines = inspect.cleandoc(func.__doc__ or "").splitlines()
    out: dict[str, list[str]] = {"": []}
    name, i = "", 0
    while i < len(lines):
        header = lines[i].strip() and not lines[i][0].isspace()
        if header and i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            name, i = lines[i].strip(), i + 2
            out[name] = []
            continue
        out[name].append(lines[i])
        i += 1
    return out


def documented_parameters(section: list[str]) -> list[str]:
    """The names of a ``Parameters`` section: its unindented lines (``a, b`` documents both)."""
    names = []
    for line in section:
        if line.strip() and not line[0].isspace():
            names += [n.strip().lstrip("*") for n in line.split(" : ")[0].split(",")]
    return names


def documented_keys(func, namespace: dict) -> set[tuple]:
    """``(attr, key)`` and ``(attr, key, subkey)`` of every ``adata.obs/obsm/uns[...]`` its ``Returns`` names.

    The expressions in the brackets (``key_added + '_input'``) are evaluated with the call's arguments in
    ``namespace``; a name bound to a list stands for each of its values.
    """
    text = "\n".join(sections(func).get("Returns", []))
    keys: set[tuple] = set()
    for attr, *exprs in ANNDATA_KEY.findall(text):
        values = []
        for expr in filter(None, exprs):
            names = [n for n in re.findall(r"[A-Za-z_]\w*", expr) if n in namespace]
            if not all(isinstance(namespace[n], str | list) for n in names):
                break  # e.g. ``key_added=None``: the function resolves it, the call below names it
            choices = [namespace[n] if isinstance(namespace[n], list) else [namespace[n]] for n in names]
            values.append(
                {eval(expr, {"__builtins__": {}}, dict(zip(names, c, strict=True))) for c in product(*choices)}
            )
        else:
            keys |= {(attr, *combo) for combo in product(*values)}
    return keys


@pytest.mark.parametrize(("name", "func"), PUBLIC, ids=IDS)
def test_docstring_sections(name, func):
    """Parameters (every argument, nothing else), Returns and Examples that start from ``import aestetik``."""
    found = sections(func)
    params = list(inspect.signature(func).parameters)
    if params:
        assert "Parameters" in found, f"{name}: no Parameters section"
        documented = documented_parameters(found["Parameters"])
        assert sorted(documented) == sorted(params), (
            f"{name}: undocumented {sorted(set(params) - set(documented))}, "
            f"not in the signature {sorted(set(documented) - set(params))}"
        )
    assert "".join(found.get("Returns", [])).strip(), f"{name}: no Returns section"
    examples = "\n".join(found.get("Examples", []))
    assert ">>> import aestetik as ae" in examples, f"{name}: no Examples section starting with the import"
    assert f"ae.{func.__module__.split('.')[1]}.{name}(" in examples, f"{name}: its Examples do not call it"


WRITERS = [(n, f, i) for (n, f), i in zip(PUBLIC, IDS, strict=True) if "copy" in inspect.signature(f).parameters]


@pytest.mark.parametrize(("name", "func"), [w[:2] for w in WRITERS], ids=[w[2] for w in WRITERS])
def test_writers_name_their_keys(name, func):
    """A function that writes into the AnnData lists the ``obs`` / ``obsm`` / ``uns`` keys it writes."""
    namespace = dict.fromkeys(inspect.signature(func).parameters, "x") | {"setting": ["x"]}
    assert documented_keys(func, namespace), f"{name}: Returns names no adata.obs/obsm/uns key"


def written(before, after) -> set[tuple]:
    """What ``after`` has that ``before`` had not: ``obs`` columns, ``obsm`` keys, ``uns`` keys or the new entries
    of an ``uns`` dict (a ``Returns`` entry ``adata.uns[key]`` covers all of ``key``'s entries)."""
    new = {("obs", k) for k in set(after.obs) - set(before.obs)}
    new |= {("obsm", k) for k in set(after.obsm) - set(before.obsm)}
    for k, v in after.uns.items():
        if isinstance(v, dict):  # e.g. uns["aestetik"]["prepare"]: each step adds its entry
            new |= {("uns", k, s) for s in v if s not in before.uns.get(k, {})}
        elif k not in before.uns:
            new.add(("uns", k))
    return new


def test_documented_keys_are_the_keys_written(tmp_path):
    """Run each writer on a small section: every key it adds is one its Returns section names.

    ``tl.ablation`` (three more trainings, ~15 s) and ``pp.morphology`` (needs an image) are checked by
    ``test_writers_name_their_keys`` only; tests/test_ablation.py and tests/test_morphology.py test their keys.
    """
    fit_kwargs = {k: v for k, v in FAST_FIT.items() if k != "show_progress_bar"}
    adata = make_small()
    steps = [
        (ae.pp.prepare, {"morphology_key": "X_morphology", "n_clusters": 3, "clustering_method": "kmeans"}),
        (ae.tl.fit, FAST_FIT),
        (ae.tl.cluster, {"n_clusters": 3, "method": "kmeans", "key_added": "domains"}),
        (ae.tl.embed, {"n_mc_samples": 3, "key_added": "aestetik_mc"}),
        (ae.tl.load_model, {"path": tmp_path / "model.pt", "key": "loaded"}),
        (ae.tl.consensus, {"n_seeds": 2, "n_clusters": 3, "fit_kwargs": fit_kwargs, "key_added": "cons"}),
    ]
    checked = []
    for func, kwargs in steps:
        if func is ae.tl.load_model:
            ae.tl.save_model(adata, kwargs["path"])
            assert kwargs["path"].is_file()
        params = inspect.signature(func).parameters
        kwargs = {**kwargs, **({"show_progress_bar": False} if "show_progress_bar" in params else {})}
        before = adata.copy()
        func(adata, **kwargs)
        namespace = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
        namespace |= {**kwargs, "setting": ["transcriptomics", "morphology", "both"]}
        namespace["transcriptomics_key"] = "X_pca"
        new = written(before, adata)
        assert new, f"{func.__name__} wrote nothing"
        documented = documented_keys(func, namespace)
        missing = {key for key in new if key not in documented and key[:2] not in documented}
        assert not missing, f"{func.__name__} writes {sorted(missing)}, which its Returns section does not name"
        checked.append(func.__name__)
    assert checked == [f.__name__ for f, _ in steps]


# -- the API page ----------------------------------------------------------------------------------------------


def test_api_page_matches_all():
    """docs/api.md lists exactly the ``__all__`` of each public module, under its ``.. module::``."""
    text = (DOCS / "api.md").read_text()
    for short, mod in MODULES.items():
        assert f".. module:: aestetik.{short}" in text
        listed = re.findall(rf"^\s+{short}\.(\w+)\s*$", text, flags=re.MULTILINE)
        assert sorted(listed) == sorted(mod.__all__), (
            f"aestetik.{short}: not on the API page {sorted(set(mod.__all__) - set(listed))}, "
            f"on it but not public {sorted(set(listed) - set(mod.__all__))}"
        )


# -- tutorials, hosted build, doc extra --------------------------------------------------------------------------


def test_tutorials_page_lists_every_notebook():
    """Every notebook is in the tutorials page's toctree and has a card with its thumbnail; nothing else is."""
    text = (DOCS / "tutorials.md").read_text()
    toctree = re.search(r"```\{toctree\}\n(.*?)```", text, flags=re.DOTALL).group(1)
    entries = [line.strip() for line in toctree.splitlines() if line.strip() and not line.startswith(":")]
    assert sorted(entries) == sorted(f"notebooks/{p.stem}" for p in NOTEBOOKS)
    for path in NOTEBOOKS:
        assert f":link: notebooks/{path.stem}\n" in text
        assert f":img-top: _static/thumbnails/{path.stem}.png\n" in text
    assert "tutorials" in (DOCS / "index.md").read_text().split("```{toctree}")[1]


def _conf() -> dict:
    """The names conf.py defines, as the hosted build sees them (online, sys.path left as it was)."""
    path = list(sys.path)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AESTETIK_DOCS_OFFLINE", raising=False)
        try:
            return runpy.run_path(str(DOCS / "conf.py"))
        finally:
            sys.path[:] = path


def _torch_pins(text: str) -> list[str]:
    return re.findall(r"torch==([\w.+]+)", text)


def test_readthedocs_installs_cpu_torch_first():
    """The hosted build installs the CPU build of the tested PyTorch before the package, and fails on warnings."""
    config = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
    assert config["sphinx"]["fail_on_warning"] is True
    commands = config["build"]["jobs"]["pre_install"]
    torch = [c for c in commands if "torch==" in c]
    assert len(torch) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch[0]
    assert torch[0].startswith("python -m pip install ")
    (install,) = config["python"]["install"]
    assert install["path"] == "."
    assert "doc" in install["extra_requirements"]
    # the same PyTorch as CI and the installation page
    pins = {*_torch_pins(torch[0]), *_torch_pins((ROOT / ".ci" / "run").read_text())}
    pins |= set(_torch_pins((DOCS / "installation.md").read_text()))
    assert len(pins) == 1, pins


def test_doc_extra_holds_the_sphinx_extensions():
    """Every third-party extension and the theme that conf.py loads is in the ``doc`` extra."""
    pytest.importorskip("sphinx")  # the extensions' distributions are looked up among the installed ones
    conf = _conf()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["doc"]
    names = {re.split(r"[<>=!~ \[]", req)[0].lower().replace("_", "-") for req in extra}
    local = {p.stem for p in (DOCS / "extensions").glob("*.py")}
    distributions = packages_distributions()
    for module in [*conf["extensions"], conf["html_theme"]]:
        if module.startswith("sphinx.ext.") or module in local:
            continue
        dists = {d.lower().replace("_", "-") for d in distributions.get(module.split(".")[0], [])}
        assert dists & names, f"{module} ({dists}) is not in the doc extra"
    assert set(conf["intersphinx_mapping"]) >= {"numpy", "anndata", "scanpy", "torch"}


# -- the offline build --------------------------------------------------------------------------------------------


def _foreign_modules() -> set[str]:
    """The top-level modules of the projects in the hosted build's ``intersphinx_mapping``."""
    mapping = _conf()["intersphinx_mapping"]
    modules = set(mapping) - {"python"}
    if "python" in mapping:
        modules |= set(sys.stdlib_module_names) | {"builtins"}
    return modules


def _warnings(text: str) -> list[str]:
    """The warnings of a ``-w`` file, a warning's continuation lines joined to it."""
    out: list[str] = []
    for line in text.splitlines():
        if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE):", line) or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return [w for w in out if w.strip()]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The HTML built offline from a copy of docs/ (the rest of the repository linked beside it)."""
    pytest.importorskip("sphinx")
    root = tmp_path_factory.mktemp("docs_src")
    for entry in ROOT.iterdir():
        if entry.name not in {"docs", ".git"}:
            (root / entry.name).symlink_to(entry)

    def build_outputs(folder, names):  # autosummary's stubs, local builds, the thumbnails of an earlier build
        if Path(folder) == DOCS:
            return {"generated", "_build"} & set(names)
        return {n for n in names if n != ".gitignore"} if Path(folder) == DOCS / "_static" / "thumbnails" else set()

    shutil.copytree(DOCS, root / "docs", symlinks=True, ignore=build_outputs)
    out = tmp_path_factory.mktemp("docs_html")
    warnings = out.parent / "warnings.txt"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(warnings), str(root / "docs"), str(out)]
    env = {**os.environ, "AESTETIK_DOCS_OFFLINE": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-5000:]
    foreign = _foreign_modules()
    own = []
    for warning in _warnings(warnings.read_text()):
        target = re.search(r"reference target not found: ([\w.]+)", warning)
        top = target.group(1).split(".")[0] if target else None
        if top is not None and top != "aestetik" and top in foreign:
            continue  # another project's object: resolved by intersphinx in the hosted build
        own.append(warning.replace(str(root), "<repo>"))
    assert not own, f"{len(own)} warning(s) of the docs build:\n" + "\n".join(own)
    return out


def test_docs_build_without_own_warnings(built):
    """The build finished with only foreign references unresolved; every public function got its page."""
    for mod, name in ((f.__module__.split(".")[1], n) for n, f in PUBLIC):
        page = built / "generated" / f"aestetik.{mod}.{name}.html"
        assert page.is_file(), f"no API page for aestetik.{mod}.{name}"
        assert "Examples" in page.read_text()
    for page in ("installation", "tutorials", "api", "index"):
        assert (built / f"{page}.html").is_file()
    assert "download.pytorch.org/whl/cpu" in (built / "installation.html").read_text()


def test_notebooks_render_on_the_tutorials_page(built):
    """Each notebook renders with all its figures, and its card shows a thumbnail taken from its last figure."""
    tutorials = (built / "tutorials.html").read_text()
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        n_images = sum(
            1 for c in cells for o in c.get("outputs", []) if {"image/png", "image/jpeg"} & set(o.get("data", {}))
        )
        html = (built / "notebooks" / f"{path.stem}.html").read_text()
        assert html.count("<img") >= n_images >= 1, path.name
        assert f'href="notebooks/{path.stem}.html"' in tutorials
        assert f'src="_images/{path.stem}.png"' in tutorials
        assert (built / "_images" / f"{path.stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_thumbnail_is_the_last_figure(tmp_path):
    """The extension takes the last image output (PNG or JPEG) and writes a PNG at most 480 px wide."""
    pytest.importorskip("sphinx")
    from PIL import Image

    sys.path.insert(0, str(DOCS / "extensions"))
    try:
        import notebook_thumbnails as nt
    finally:
        sys.path.remove(str(DOCS / "extensions"))

    def encoded(colour, size, fmt):
        buffer = io.BytesIO()
        Image.new("RGB", size, colour).save(buffer, format=fmt)
        return base64.b64encode(buffer.getvalue()).decode()

    def cell(data):
        return {"cell_type": "code", "outputs": [{"output_type": "display_data", "data": data}]}

    cells = [
        cell({"image/png": encoded((255, 0, 0), (100, 50), "PNG")}),
        {"cell_type": "markdown", "source": ["text"]},
        cell({"image/jpeg": encoded((0, 0, 255), (960, 240), "JPEG"), "text/plain": "<Figure>"}),
        cell({"text/plain": "no figure"}),
    ]
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": cells}))
    target = tmp_path / "nb.png"
    nt.write_thumbnail(nt.last_image(notebook), target)
    with Image.open(target) as img:
        assert img.format == "PNG"
        assert img.size == (480, 120)
        r, _g, b = img.convert("RGB").getpixel((240, 60))
        assert b > 200 > r, "not the last (blue) figure"
    notebook.write_text(json.dumps({"cells": [cell({"text/plain": "x"})]}))
    assert nt.last_image(notebook) is None
