"""L2-regularised logistic regression in numpy, so the edge needs no scikit-learn.

Minimises the same objective as scikit-learn's ``LogisticRegression(C=C)`` with the lbfgs
solver: ``C · Σ_i CE(x_i, y_i) + ½‖W‖²`` (the intercept is not penalised); multinomial
softmax for three or more classes, a single sigmoid logit for two, as scikit-learn does.
The optimiser is a small L-BFGS (Nocedal & Wright, Numerical Optimization, Alg. 7.4) with
a backtracking Armijo line search: the objective is smooth and strongly convex.

>>> import numpy as np
>>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
>>> w, b = fit_logistic(x, y, n_classes=2, C=10.0)
>>> (predict_logistic_proba(x, w, b).argmax(1) == y).all()
np.True_
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, C: float = 1.0,
                 max_iter: int = 500, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Fit on features ``x`` (N×D) and integer labels ``y`` in [0, n_classes).

    Returns weights (D×K', float32) and bias (K',), K' = 1 for two classes, else K.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    d = x.shape[1]
    k = 1 if n_classes == 2 else n_classes
    target = y[:, None].astype(np.float64) if k == 1 else np.eye(k)[y]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        z = x @ w + b
        if k == 1:  # binary cross-entropy on one logit, computed stably
            loss = np.sum(np.logaddexp(0.0, z) - target * z)
            resid = 1.0 / (1.0 + np.exp(-z)) - target
        else:
            zmax = z.max(axis=1, keepdims=True)
            lse = zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
            loss = np.sum(lse) - np.sum(target * z)
            resid = np.exp(z - lse) - target
        f = C * loss + 0.5 * np.sum(w * w)
        gw = C * (x.T @ resid) + w
        gb = C * resid.sum(axis=0)
        return float(f), np.concatenate([gw.ravel(), gb])

    theta = lbfgs(objective, np.zeros(d * k + k), max_iter=max_iter, tol=tol)
    w, b = theta[: d * k].reshape(d, k), theta[d * k :]
    return w.astype(np.float32), b.astype(np.float32)


def predict_logistic_proba(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Class probabilities N×K (K = 2 when ``w`` has one column)."""
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    if z.shape[1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def lbfgs(objective: Objective, theta: np.ndarray, max_iter: int = 500, tol: float = 1e-6,
          memory: int = 10) -> np.ndarray:
    """Minimise a smooth function; stops when the gradient's max-norm is below
    ``tol · max(1, |f|)``, when a step no longer lowers f beyond rounding (scipy's ftol of
    64·eps, as scikit-learn uses), or after ``max_iter`` iterations."""
    f, g = objective(theta)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(max_iter):
        if np.abs(g).max() <= tol * max(1.0, abs(f)):
            break
        direction = -_two_loop(g, s_hist, y_hist)
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            s_hist.clear()
            y_hist.clear()
            direction, slope = -g, -float(g @ g)
        step, f_new, g_new = _armijo(objective, theta, f, slope, direction)
        if step == 0.0:
            break
        s, yv = step * direction, g_new - g
        if float(s @ yv) > 1e-12:  # keep the curvature pair only if it is positive
            s_hist.append(s)
            y_hist.append(yv)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        stalled = (f - f_new) <= 64 * np.finfo(float).eps * max(abs(f), abs(f_new), 1.0)
        theta, f, g = theta + s, f_new, g_new
        if stalled:
            break
    return theta


def _two_loop(g: np.ndarray, s_hist: list[np.ndarray], y_hist: list[np.ndarray]) -> np.ndarray:
    q = g.copy()
    alphas = []
    for s, yv in zip(reversed(s_hist), reversed(y_hist), strict=True):
        a = float(s @ q) / float(yv @ s)
        alphas.append(a)
        q -= a * yv
    if s_hist:
        q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
    for (s, yv), a in zip(zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True):
        b = float(yv @ q) / float(yv @ s)
        q += (a - b) * s
    return q


def _armijo(objective: Objective, theta: np.ndarray, f: float, slope: float,
            direction: np.ndarray) -> tuple[float, float, np.ndarray]:
    step = 1.0
    for _ in range(40):
        f_new, g_new = objective(theta + step * direction)
        if f_new <= f + 1e-4 * step * slope:
            return step, f_new, g_new
        step *= 0.5
    return 0.0, f, np.zeros_like(theta)
