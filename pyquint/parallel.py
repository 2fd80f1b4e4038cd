"""How many threads a call may use: one rule and one name (``n_jobs``) for the whole API.

``n_jobs=None``, ``0`` or negative (scikit-learn's ``-1``) means every core this process may
run on (its CPU affinity, e.g. what a cluster job was given); a positive number is used as
given, capped at those cores (more threads than cores only add overhead). The CLI options
``--threads``/``--jobs`` map to ``n_jobs`` unchanged.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["available_cpus", "resolve_n_jobs"]


def available_cpus() -> int:
    """Cores this process may run on (its affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_n_jobs(n_jobs: int | None = None, *, alias: int | None = None,
                   alias_name: str = "n_threads") -> int:
    """The number of threads for ``n_jobs`` (see the module docstring).

    Parameters
    ----------
    n_jobs : int, optional
        The caller's request.
    alias, alias_name : optional
        A deprecated keyword the caller still accepts (e.g. ``n_threads``): used when
        ``n_jobs`` is None, with a :class:`DeprecationWarning`.

    Returns
    -------
    int
        At least 1 and at most :func:`available_cpus`.
    """
    if alias is not None:
        warnings.warn(f"{alias_name}= is deprecated; use n_jobs=", DeprecationWarning, stacklevel=3)
        if n_jobs is None:
            n_jobs = alias
    cores = available_cpus()
    if n_jobs is None or int(n_jobs) < 1:
        return cores
    return min(int(n_jobs), cores)
