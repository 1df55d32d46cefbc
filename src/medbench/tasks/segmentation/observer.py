"""The `observer` runner: a second human reader scored as if it were a model.

DRIVE's test images have a second observer's manual segmentation; scored inside the FOV
against the first observer (the reference), it is the human agreement a model is compared
with (the survey's and the DRIVE papers' natural upper reference). Its masks are the
prediction (probability 1 on the class it drew), binarised at 0.5; nothing is trained.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from medbench.errors import ConfigError
from medbench.metrics.segmentation import FovPixelMetrics
from medbench.tasks.runner import RunContext, RunOutcome, finish


def score_observer(ctx: RunContext) -> RunOutcome:
    datamodule = ctx.datamodule
    datamodule.setup()
    observers = getattr(datamodule, "observers", {}).get("test")
    if not observers:
        raise ConfigError(f"runner=observer: {datamodule.info.name} has no observer masks for "
                          "its test split (data.splits.test.observer)")
    classes = datamodule.info.num_classes
    thresholds = torch.full((classes - 1,), 0.5, dtype=torch.float64)
    pooled, rows, examples = FovPixelMetrics(classes), [], []
    start = time.perf_counter()
    for index, (observer, target) in enumerate(zip(observers, datamodule.splits["test"][1],
                                                   strict=True)):
        probs = torch.nn.functional.one_hot(torch.as_tensor(observer), classes)
        probs = probs.permute(2, 0, 1)[None].double()
        mask, fov = torch.as_tensor(target["mask"])[None], torch.as_tensor(target["fov"])[None]
        one = FovPixelMetrics(classes)
        one.update(probs, mask, fov.bool())
        pooled.update(probs, mask, fov.bool())
        rows.append({"index": index, **{k: float(v[0]) for k, v in
                                        one.per_image(thresholds).items()}})
        if len(examples) < 4:
            image = datamodule.splits["test"][0][index].astype(np.float32)
            examples.append({"index": index, "image": np.moveaxis(image, -1, 0),
                             "probs": probs[0].numpy(), "mask": target["mask"],
                             "fov": target["fov"], "thresholds": thresholds.numpy()})
    results = pooled.results(thresholds)
    results.pop("thresholds")
    metrics = {f"test/{k}": float(v) for k, v in results.items()}
    metrics.update({"test/threshold": 0.5, "model/params": 0.0, "model/macs": 0.0})
    predictions = {key: torch.as_tensor([row[key] for row in rows]) for key in rows[0]}
    predictions["examples"] = examples
    outcome = RunOutcome(metrics, predictions, tags={"observer": "second reader"},
                         test_seconds=time.perf_counter() - start)
    return finish(ctx, outcome)
