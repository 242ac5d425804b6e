"""The course notebooks' exact datasets (``*_course``): same seeds, same call order, no standardisation.

They use private ``RandomState`` objects, which draw exactly what the notebooks' global-RNG calls draw, without
touching the caller's global RNG state; the course's numbers can then be matched digit for digit.
"""

from __future__ import annotations

import numpy as np

from src.data.generators import Randn, flower


def course_arrays(name: str) -> tuple[list[np.ndarray], dict]:
    """The course notebooks' exact points. ``make_*(..., random_state=RandomState(s))`` draws exactly what
    ``np.random.seed(s); make_*(...)`` draws from the global RNG (scikit-learn's ``check_random_state(None)``
    *is* the global RandomState), so the caller's global RNG is left alone."""
    if name == "circles_course":
        from sklearn.datasets import make_circles

        X_tr, y_tr = make_circles(n_samples=300, noise=.05, random_state=np.random.RandomState(1))
        X_te, y_te = make_circles(n_samples=100, noise=.05, random_state=np.random.RandomState(2))
        arrays = [X_tr, y_tr, X_te.copy(), y_te.copy(), X_te, y_te]
        recipe = {"generator": "sklearn.datasets.make_circles",
                  "train": "np.random.seed(1); make_circles(n_samples=300, noise=.05)",
                  "test": "np.random.seed(2); make_circles(n_samples=100, noise=.05)",
                  "course": "Improving Deep Neural Networks: Initialization"}
        flags = {"val_is_test": True, "val_is_train": False, "test_is_train": False,
                 "course_seeds": {"train": 1, "test": 2},
                 "note": "the course has no validation set: val is a copy of test"}
    elif name == "moons_course":
        from sklearn.datasets import make_moons

        X, y = make_moons(n_samples=300, noise=.2, random_state=np.random.RandomState(3))
        arrays = [X, y, X.copy(), y.copy(), X.copy(), y.copy()]
        recipe = {"generator": "sklearn.datasets.make_moons",
                  "train": "np.random.seed(3); make_moons(n_samples=300, noise=.2)",
                  "course": "Improving Deep Neural Networks: Optimization"}
        flags = {"val_is_test": False, "val_is_train": True, "test_is_train": True,
                 "course_seeds": {"train": 3},
                 "note": "the course has only a training set: val and test are copies of train"}
    elif name == "flower_course":
        X, y = flower(400, 0.2, Randn(np.random.RandomState(1)))
        arrays = [X, y, X.copy(), y.copy(), X.copy(), y.copy()]
        recipe = {"generator": "planar petals: np.random.seed(1); load_planar_dataset() (m=400, N=200, a=4)",
                  "n_samples": 400, "noise": 0.2, "a": 4,
                  "course": "Neural Networks and Deep Learning: Planar data"}
        flags = {"val_is_test": False, "val_is_train": True, "test_is_train": True,
                 "course_seeds": {"train": 1},
                 "note": "the course has only a training set: val and test are copies of train"}
    else:  # pragma: no cover
        raise AssertionError(name)
    return arrays, {"recipe": recipe, **flags}
