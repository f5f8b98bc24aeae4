"""A heavy handler: a scikit-learn random forest over pandas, trained when the module is imported.

Importing pandas, scikit-learn and SciPy and fitting the model takes about a second and some
hundred MB; forkric does it once and forks, so every worker shares those pages instead of
importing them again. An event {"rows": [{"f0": 0.1, ..., "f7": -1.2}, ...]} is scored; without
rows, {"n": 16} random rows are (default 16).
"""

from __future__ import annotations

import os

# One thread per worker: the processes are the parallelism, and a BLAS thread pool started
# before the fork would not survive it.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

FEATURES = [f"f{i}" for i in range(8)]


def train() -> RandomForestClassifier:
    features, labels = make_classification(n_samples=4000, n_features=len(FEATURES),
                                           n_informative=5, random_state=7)
    model = RandomForestClassifier(n_estimators=40, max_depth=10, n_jobs=1, random_state=7)
    return model.fit(pd.DataFrame(features, columns=FEATURES), labels)


MODEL = train()


def rows_of(event: Any) -> pd.DataFrame:
    if isinstance(event, dict) and event.get("rows"):
        return pd.DataFrame(event["rows"], columns=FEATURES).fillna(0.0)
    count = int(event.get("n", 16)) if isinstance(event, dict) else 16
    random = np.random.default_rng()
    return pd.DataFrame(random.normal(size=(count, len(FEATURES))), columns=FEATURES)


def handler(event: Any, context: Any) -> dict[str, Any]:
    frame = rows_of(event)
    scores = MODEL.predict_proba(frame)[:, 1]
    return {"count": len(frame), "positive": int((scores > 0.5).sum()),
            "mean_score": round(float(scores.mean()), 4)}
