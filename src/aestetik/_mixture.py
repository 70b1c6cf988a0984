"""One start of the Bayesian Gaussian mixture, in a module that imports only numpy, scikit-learn and threadpoolctl.

:func:`aestetik._clustering.best_bgm` fits the mixture's starts in worker processes; a worker imports this
module (and the package's lazy ``__init__``) to run a start, not scanpy, so it starts in about half the time.
"""

from __future__ import annotations

import warnings

import numpy as np


def fit_bgm_start(x: np.ndarray, n_clusters: int, random_state: int, init: str, start: int, reg_covar: float):
    """Start ``start`` of a mixture fit with ``init_params=init``, or the error it raised.

    See :func:`aestetik._clustering.best_bgm` for the random stream of each start.
    An ill-conditioned covariance comes back as the exception (the caller retries the group); any other error is
    raised. Convergence warnings are silenced here and judged on the chosen fit by the caller.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture
    from threadpoolctl import threadpool_limits

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
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return bgm.fit(x)
    except (ValueError, np.linalg.LinAlgError) as err:
        if isinstance(err, np.linalg.LinAlgError) or "reg_covar" in str(err):
            return err
        raise
