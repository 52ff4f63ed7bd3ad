"""The Fréchet distance between two sets of audio embeddings (FAD when the embeddings are an audio model's): one
function for every embedding the evaluations use, the project's tagger (in-domain) and the third-party judges'."""
from __future__ import annotations

import numpy as np

from tokenwave.errors import InvalidArgumentError


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Embedding sets ``a [N, D]`` and ``b [M, D]`` -> Fréchet distance between the Gaussians fitted to them (FAD
    when the embeddings are an audio model's): ``|mu_a - mu_b|^2 + tr(Ca + Cb - 2 (Ca^1/2 Cb Ca^1/2)^1/2)``.

    The trace of the matrix square root is taken from the eigenvalues of the symmetric ``Ca^1/2 Cb Ca^1/2``, which
    stays exact when there are fewer clips than dimensions (singular covariances), where ``sqrtm(Ca @ Cb)`` drifts.
    0 for identical sets; needs at least 2 items per set."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InvalidArgumentError(f"embedding sets of shapes {a.shape} and {b.shape} cannot be compared",
                                   "pass two [N, D] arrays with the same D")
    if len(a) < 2 or len(b) < 2:
        raise InvalidArgumentError("a Fréchet distance needs at least 2 embeddings per set", "embed more clips")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ cb @ root_a)
    trace_sqrt = float(np.sqrt(np.clip(cross, 0, None)).sum())
    return float(max(0.0, np.sum((mu_a - mu_b) ** 2) + np.trace(ca) + np.trace(cb) - 2 * trace_sqrt))
