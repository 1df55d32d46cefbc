"""The `deep_features` runner: CNN features from chosen layers + a scikit-learn classifier.

Survey 4.1.1 (OverFeat features + random forest, Ciompi et al., 2015) and 4.4.2 (mid- and
high-level CNN features + SVM). The network is not trained here: its weights come from
``model.pretrained_path`` (a file or ``run:<id>``), or stay random, which is logged as a tag.
Each chosen layer's output is global-average-pooled (feature maps) and concatenated.
"""

from __future__ import annotations

import difflib
import time

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.base import BaseEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from medbench.data.base import SplitDataModule
from medbench.errors import ConfigError
from medbench.metrics.classification import scalar_metrics
from medbench.tasks.runner import RunContext, RunOutcome, finish


class LayerFeatures:
    """Collects pooled outputs of named modules (default: the input of the last Linear)."""

    def __init__(self, net: nn.Module, layers: list[str]) -> None:
        modules = dict(net.named_modules())
        for name in layers:
            if name not in modules:
                close = difflib.get_close_matches(name, list(modules), n=3)
                raise ConfigError(f"runner.layers: no module '{name}' in the model"
                                  + (f"; did you mean {', '.join(close)}?" if close else ""))
        self.net, self._outputs = net.eval(), {}
        if layers:
            for name in layers:
                modules[name].register_forward_hook(self._keep(name))
        else:
            linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
            if not linear:
                raise ConfigError("runner.layers: the model has no Linear layer; name layers")
            linear[-1].register_forward_hook(lambda _m, inputs, _o: self._store("head", inputs[0]))

    def _keep(self, name: str):
        return lambda _module, _inputs, output: self._store(name, output)

    def _store(self, name: str, output: torch.Tensor) -> None:
        self._outputs[name] = output.flatten(2).mean(2) if output.dim() > 2 else output

    @torch.no_grad()
    def transform(self, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features, labels, indices = [], [], []
        for batch in loader:
            self._outputs.clear()
            self.net(batch["image"])
            features.append(torch.cat([self._outputs[k] for k in sorted(self._outputs)], 1))
            labels.append(batch["target"])
            indices.append(batch["index"])
        return (torch.cat(features).float().numpy(), torch.cat(labels).numpy(),
                torch.cat(indices).numpy())


def sklearn_classifier(spec: DictConfig, standardize: bool) -> BaseEstimator:
    """The scikit-learn estimator of ``spec`` (``_target_``), after a StandardScaler when
    ``standardize``."""
    classifier = instantiate(spec)
    return make_pipeline(StandardScaler(), classifier) if standardize else classifier


def predict_splits(extractor: LayerFeatures, classifier: BaseEstimator,
                   datamodule: SplitDataModule
                   ) -> tuple[dict[str, float], dict[str, torch.Tensor], float]:
    """The fitted ``classifier``'s val and test metrics on ``extractor``'s features, the test
    split's predictions (index, label, probs) and the seconds it took."""
    info = datamodule.info
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        start = time.perf_counter()
        x, y, index = extractor.transform(datamodule.eval_dataloader(split))
        probs = torch.as_tensor(classifier.predict_proba(x), dtype=torch.float32)
        test_seconds = time.perf_counter() - start  # the last split's: the test set
        target = torch.as_tensor(y)
        scores = probs
        if info.label_type == "binary":
            scores, target = probs[:, info.positive_class], (target == info.positive_class).long()
        collection = scalar_metrics(info.label_type, info.num_classes).clone(prefix=f"{split}/")
        metrics.update({k: float(v) for k, v in collection(scores, target).items()})
    predictions = {"index": torch.as_tensor(index), "label": torch.as_tensor(y), "probs": probs}
    return metrics, predictions, test_seconds


def fit_deep_features(ctx: RunContext) -> RunOutcome:
    """Features of ``runner.layers`` fed to a scikit-learn classifier (no epochs: a tuning
    trial's callbacks have nothing to act on and are ignored)."""
    cfg, datamodule = ctx.cfg, ctx.datamodule
    if datamodule.info.label_type == "multilabel":
        raise ConfigError("runner=deep_features supports binary, multi-class and ordinal labels")
    tags = {"features.pretrained": str(bool(cfg.model.pretrained_path))}
    extractor = LayerFeatures(ctx.net, [str(layer) for layer in cfg.runner.layers])
    start = time.perf_counter()
    x_train, y_train, _ = extractor.transform(datamodule.eval_dataloader("train"))
    classifier = sklearn_classifier(cfg.runner.classifier, cfg.runner.standardize)
    classifier.fit(x_train, y_train)
    fit_seconds = time.perf_counter() - start
    tags["features.dim"] = str(x_train.shape[1])
    metrics, predictions, test_seconds = predict_splits(extractor, classifier, datamodule)
    return finish(ctx, RunOutcome(metrics, predictions, tags=tags, fit_seconds=fit_seconds,
                                  test_seconds=test_seconds))
