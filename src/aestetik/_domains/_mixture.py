"""The Bayesian Gaussian mixture of ``method='bgm'``, on plain arrays.

Semantics follow the reference implementation (``aestetik.utils.utils_clustering`` of aestetik 0.3.1):
:class:`~sklearn.mixture.BayesianGaussianMixture` (tied covariance, random init, ``n_init=10``,
``max_iter=1000``), plus one k-means-initialised fit; the fit with the highest lower bound wins (see
:data:`BGM_INITS`). The posterior of the assigned component is returned as confidence. The starts are fitted one
by one, each with one BLAS thread: side by side in threads of this process, or in worker processes if asked
(:func:`ranked_bgm`); an ill-conditioned covariance is retried with a larger ``reg_covar``
(:data:`BGM_REG_COVAR_RETRIES`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from scanpy import logging as logg

#: How many times ``reg_covar`` is multiplied by 10 when the mixture's covariance is ill-conditioned.
BGM_REG_COVAR_RETRIES = 3
#: Initialisations of the mixture: ``(init_params, n_init)``. The published 10 random initialisations, plus
#: one from k-means; as within sklearn's ``n_init``, the fit with the highest variational lower bound (the
#: mixture's own objective) is kept, so the result is never worse by that objective than the published one.
#: Random responsibilities start every component near the global mean and can all converge to one poor
#: split, which the k-means start avoids with a higher bound; where the random fits are better, their bound is
#: the higher one.
BGM_INITS: tuple[tuple[str, int], ...] = (("random", 10), ("kmeans", 1))


def _bgm(
    x: np.ndarray,
    n_clusters: int,
    random_state: int,
    fit_rows: np.ndarray | None = None,
    n_jobs: int = 1,
    n_components: int | None = None,
    inits: tuple[tuple[str, int], ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Bayesian Gaussian mixture (fitted on ``fit_rows`` if given) with the best of ``inits`` (see :func:`ranked_bgm`).

    With ``n_components > n_clusters`` the mixture has ``n_components`` components, which
    :func:`merge_components` joins into ``n_clusters`` clusters; a spot's cluster is the one with the largest
    summed posterior, its confidence that sum. Returns the clusters, the confidences and the agreement of the
    clusters of the two starts with the highest lower bounds (their adjusted Rand index over the rows of ``x``;
    ``None`` with a single start): 1 when the runner-up found the same clusters, low when the mixture's objective
    barely tells two different partitions apart, so that another ``random_state`` may give the other.
    """
    from sklearn.metrics import adjusted_rand_score

    data = x if fit_rows is None else x[fit_rows]
    n_components = n_clusters if n_components is None else int(n_components)
    bgm, runner_up = ranked_bgm(data, n_components, random_state, n_jobs=n_jobs, inits=inits)
    labels, proba = _clusters(bgm, x, n_clusters)
    agreement = None
    if runner_up is not None:
        agreement = float(adjusted_rand_score(labels, _clusters(runner_up, x, n_clusters)[0]))
    return labels, proba, agreement


def _clusters(bgm, x: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """The cluster of every row of ``x`` under the fitted mixture ``bgm`` (components merged), and its posterior."""
    posterior = bgm.predict_proba(x)
    if posterior.shape[1] == n_clusters:
        return bgm.predict(x), posterior.max(axis=1)
    groups = merge_components(bgm.means_, bgm.covariances_, bgm.weights_, n_clusters)
    merged = np.zeros((x.shape[0], n_clusters), dtype=posterior.dtype)
    np.add.at(merged.T, groups, posterior.T)
    return merged.argmax(axis=1), merged.max(axis=1)


def merge_components(means: np.ndarray, covariance: np.ndarray, weights: np.ndarray, n_clusters: int) -> np.ndarray:
    """The cluster (``0..n_clusters-1``) of each component of a tied-covariance mixture, by merging overlaps.

    A mixture component is not a cluster (Hennig 2010, "Methods for merging Gaussian mixture components"): a
    group of spots that is not Gaussian, such as a band of tissue with a gradient across it, takes two
    components. Repeatedly the two groups whose means are closest in the Mahalanobis distance of the shared
    ``covariance`` are merged (for equal covariances this is the pair that overlaps most: the Bhattacharyya
    distance is that distance squared over 8), the merged group's mean being the weight-averaged mean of its
    components, until ``n_clusters`` groups remain. Groups are numbered by their first component.
    """
    means = np.asarray(means, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    k = means.shape[0]
    if not 1 <= n_clusters <= k:
        msg = f"Cannot merge {k} mixture components into {n_clusters} clusters."
        raise ValueError(msg)
    precision = np.linalg.pinv(np.asarray(covariance, dtype=np.float64))
    groups = np.arange(k)
    centres = {i: (means[i], weights[i]) for i in range(k)}
    while len(centres) > n_clusters:
        ids = sorted(centres)
        best = None
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                d = centres[a][0] - centres[b][0]
                dist = float(d @ precision @ d)
                if best is None or dist < best[0]:
                    best = (dist, a, b)
        _, a, b = best
        (ma, wa), (mb, wb) = centres[a], centres.pop(b)
        total = wa + wb
        centres[a] = ((wa * ma + wb * mb) / total if total > 0 else (ma + mb) / 2, total)
        groups[groups == b] = a
    return np.unique(groups, return_inverse=True)[1]


def _lower_bound(model) -> float:
    return float(np.asarray(model.lower_bound_).reshape(-1)[-1])


def ranked_bgm(
    x: np.ndarray,
    n_clusters: int,
    random_state: int,
    *,
    n_jobs: int = 1,
    inits: tuple[tuple[str, int], ...] | None = None,
) -> tuple[Any, Any | None]:
    """The mixture with the highest lower bound over the starts of ``inits``, and the start with the next highest.

    The runner-up is ``None`` when there is a single start. ``inits``: ``(init_params, n_init)`` pairs, default
    :data:`BGM_INITS`; the starts are fitted in ``n_jobs`` processes.

    Every start is fitted on its own (``n_init=1``): random start ``s`` of an ``(init, n_init)`` entry draws its
    responsibilities from ``RandomState(random_state)`` after skipping the ``s`` draws of the starts before it,
    which is the stream sklearn's ``n_init`` loop reads, so the starts are those of one sklearn fit with
    ``n_init`` starts and the first start with the highest bound wins as there. Each fit runs with one BLAS thread;
    with ``n_jobs=1`` the starts run side by side in as many threads as BLAS would use (:func:`_start_threads`),
    else in ``n_jobs`` processes. The result depends on neither. A group whose covariance is ill-conditioned is refitted
    with 10x ``reg_covar``, as a whole (as its single sklearn fit would be). Entries other than ``'random'``
    have one start (further k-means starts would read a stream of no fixed length).
    """
    inits = BGM_INITS if inits is None else inits
    if any(n_init != 1 for init, n_init in inits if init != "random"):
        msg = "Only the 'random' initialisation can have several starts."
        raise AssertionError(msg)
    # one task per start: (entry of inits, init, start)
    starts = [(g, init, start) for g, (init, n_init) in enumerate(inits) for start in range(n_init)]
    reg_covar = [1e-6] * len(inits)  # sklearn's default, per entry
    fits: list[Any] = [None] * len(starts)
    todo = list(range(len(starts)))
    for attempt in range(BGM_REG_COVAR_RETRIES + 1):
        tasks = [
            (x, n_clusters, random_state, init, start, reg_covar[g]) for g, init, start in (starts[i] for i in todo)
        ]
        for i, out in zip(todo, _run(_fit_bgm_start, tasks, n_jobs, _start_threads()), strict=True):
            fits[i] = out
        errors = {starts[i][0]: fits[i] for i in reversed(todo) if isinstance(fits[i], Exception)}  # first per entry
        if not errors:
            break
        for g, err in sorted(errors.items()):
            if attempt == BGM_REG_COVAR_RETRIES:
                msg = (
                    f"The Gaussian mixture failed even with reg_covar={reg_covar[g]:g} (ill-conditioned covariance). "
                    "Use fewer clusters, or check the representation for duplicated or constant spots."
                )
                raise ValueError(msg) from err
            reg_covar[g] *= 10
            logg.warning(f"Gaussian mixture covariance ill-conditioned; retrying with reg_covar={reg_covar[g]:g}.")
        todo = [i for i, (g, _, _) in enumerate(starts) if g in errors]
    # the best start of each entry (first wins ties, as in sklearn), then the best entry (first wins ties)
    entry_best = [
        max((i for i, (h, _, _) in enumerate(starts) if h == g), key=lambda i: _lower_bound(fits[i]))
        for g in range(len(inits))
    ]
    if any(not fits[i].converged_ for i in entry_best):
        logg.warning(
            "Bayesian Gaussian mixture: Best performing initialization did not converge. Try different init "
            "parameters, or increase max_iter, tol, or check for degenerate data."
        )
    best = max(entry_best, key=lambda i: _lower_bound(fits[i]))
    others = [i for i in range(len(fits)) if i != best]
    return fits[best], (fits[max(others, key=lambda i: _lower_bound(fits[i]))] if others else None)


def _start_threads() -> int:
    """Threads for the starts in this process: as many as its BLAS uses (the cores, or the user's limit), at least 1.

    A start with one BLAS thread uses one core, so the starts side by side use the cores that BLAS would have used
    for one start at a time; a user who limited BLAS (``OMP_NUM_THREADS``, :func:`threadpoolctl.threadpool_limits`)
    limits them too.
    """
    from threadpoolctl import threadpool_info

    return max([1] + [int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "blas"])


@contextmanager
def _one_blas_thread_quietly() -> Iterator[None]:
    """One BLAS thread and no convergence warnings, for every start run inside.

    Both settings are process-wide, so they are set once around all threads of a run, never per start: a start's
    exit from either would restore the settings under the starts still running.
    """
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _in_own_process(function: Callable, *args):
    """``function(*args)`` in a worker process, with one BLAS thread and no convergence warnings."""
    with _one_blas_thread_quietly():
        return function(*args)


def _run(function: Callable, tasks: list[tuple], n_jobs: int, threads: int = 1) -> list:
    """``[function(*t) for t in tasks]``, each with one BLAS thread.

    In up to ``n_jobs`` worker processes (joblib's meaning: -1 = all cores), else in up to ``threads`` threads of
    this process (one after the other for 1).
    """
    from joblib import Parallel, delayed, effective_n_jobs

    n_jobs = min(effective_n_jobs(n_jobs), len(tasks))
    if n_jobs > 1:
        return Parallel(n_jobs=n_jobs, backend="loky")(delayed(_in_own_process)(function, *t) for t in tasks)
    threads = min(threads, len(tasks))
    with _one_blas_thread_quietly():
        if threads <= 1:
            return [function(*t) for t in tasks]
        return Parallel(n_jobs=threads, backend="threading")(delayed(function)(*t) for t in tasks)


def _fit_bgm_start(x: np.ndarray, n_clusters: int, random_state: int, init: str, start: int, reg_covar: float):
    """Start ``start`` of a mixture fit with ``init_params=init`` (see :func:`ranked_bgm`), or the error it raised.

    An ill-conditioned covariance comes back as the exception (the caller retries the group); any other error is
    raised. The caller sets one BLAS thread and silences convergence warnings (:func:`_run`); convergence is judged
    on the chosen fit.
    """
    from sklearn.mixture import BayesianGaussianMixture

    rng = np.random.RandomState(random_state)  # what sklearn makes of the int seed
    if init == "random":
        for _ in range(start):  # the responsibilities of the starts before this one
            rng.uniform(size=(x.shape[0], n_clusters))
    bgm = BayesianGaussianMixture(
        n_components=n_clusters,
        init_params=init,
        covariance_type="tied",
        max_iter=1000,
        n_init=1,
        random_state=rng,
        reg_covar=reg_covar,
    )
    try:
        return bgm.fit(x)
    except (ValueError, np.linalg.LinAlgError) as err:
        if isinstance(err, np.linalg.LinAlgError) or "reg_covar" in str(err):
            return err
        raise
