"""numpy's global random state, np.random.default_rng() and random.Random() made at import."""

import os
import random

import numpy as np

RNG = np.random.default_rng()
PY_RNG = random.Random()
np.random.random()


def handler(event, context):
    return {"token": event["token"], "pid": os.getpid(),
            "draws": [float(np.random.random()), float(RNG.random()), PY_RNG.random()]}
