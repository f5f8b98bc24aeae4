"""A PyTorch model built and run at import (CPU, intra-op threads), a forward pass per call."""

import os

import torch

torch.manual_seed(0)
MODEL = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 8))
with torch.no_grad():
    MODEL(torch.randn(64, 256))


def handler(event, context):
    token = int(event["token"])
    with torch.no_grad():
        x = torch.full((32, 256), float(token % 7))
        out = MODEL(x)
    return {"token": event["token"], "pid": os.getpid(), "value": round(float(out.sum()), 3),
            "threads": torch.get_num_threads()}
