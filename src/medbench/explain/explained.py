"""A trained network's test items explained (images, signals, volumes; whole or the family's
crop): the chosen, most confident and worst-handled items, a map per method, overlays, the
randomisation check and a faithfulness score."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset

from medbench.data.base import SplitDataModule
from medbench.errors import ConfigError
from medbench.explain.overlays import overlay
from medbench.explain.saliency import (
    check_methods,
    methods_for,
    saliency_maps,
    target_layer_name,
)
from medbench.explain.sanity import cascading_randomisation, confidence_change
from medbench.explain.targets import SaliencyTargets


@dataclass
class ExplainOptions:
    """``explain.*``: what is explained and checked."""

    # null: those the input and the family support (2D images: gradcam, gradcam_pp, scorecam;
    # signals, volumes and detection: gradcam, gradcam_pp)
    methods: list[str] | None = None
    target_layer: str | None = None  # null: the last module producing a spatial feature map
    # a centred crop of each test item, a size per spatial dim, scored and explained (null:
    # the family's: whole items; segmentation: sides cut to multiples of 32)
    crop: list[int] | None = None
    indices: list[int] = field(default_factory=list)  # test items explained by choice
    top: int = 4  # the most confident and the worst-handled test items explained, each
    sanity_stages: int = 3  # cascade stages: the top layer alone ... every layer re-initialised
    max_rank_corr: float = 0.5  # a method whose fully randomised maps correlate more: flagged
    seed: int = 0  # the randomised weights' draw
    at_test: bool = False  # `medbench train`: explain the selected checkpoint after testing
    device: str = "cpu"  # where maps are computed: cpu, cuda, cuda:1, ...


def explain_options(values: Any = None) -> ExplainOptions:
    """``explain.*`` values (a mapping or dotted ``key=value`` strings) over the defaults,
    type-checked: one line naming the key otherwise."""
    base = OmegaConf.structured(ExplainOptions)
    try:
        if isinstance(values, (list, tuple)):
            values = OmegaConf.from_dotlist([v.removeprefix("explain.") for v in values])
        merged = OmegaConf.merge(base, values or {})
    except OmegaConfBaseException as err:
        raise ConfigError(f"explain: {str(err).splitlines()[0]}") from None
    options = ExplainOptions(**OmegaConf.to_container(merged))
    if options.methods is not None:
        options.methods = check_methods(options.methods)
    if options.methods == [] or options.top < 0 or options.sanity_stages < 1:
        raise ConfigError("explain: methods must name one method or more, top be >= 0 and "
                          "sanity_stages >= 1")
    return options


def test_scores(net: nn.Module, datamodule: SplitDataModule, targets: SaliencyTargets,
                crop: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Per test item (in the split's order) the family's scores of the part explained, and its
    target when that is a tensor (a label, not a mask)."""
    net.eval()
    rows: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            batch = targets.prepare(batch, crop)
            outputs = targets.outputs(net, batch["image"].to(next(net.parameters()).device))
            outputs = outputs.cpu() if torch.is_tensor(outputs) else outputs
            scores = targets.scores(outputs, batch["target"], datamodule.info)
            extra = {"target": batch["target"]} if torch.is_tensor(batch["target"]) else {}
            for key, value in {"index": batch["index"], **extra, **scores}.items():
                rows.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in rows.items()}


def test_items(datamodule: SplitDataModule, targets: SaliencyTargets, positions: list[int],
               crop: list[int] | None) -> dict[str, Any]:
    """The test items at ``positions`` as one batch (the split's own collation), prepared as
    the family explains them."""
    loader = datamodule.test_dataloader()
    subset = Subset(loader.dataset, positions)
    batch = next(iter(DataLoader(subset, batch_size=len(positions),
                                 collate_fn=loader.collate_fn)))
    return targets.prepare(batch, crop)


def selected_items(scores: dict[str, torch.Tensor], options: ExplainOptions
                   ) -> list[tuple[int, str]]:
    """(position in the test split, why) of the items explained: chosen, then the most
    confident, then the worst handled (lowest score on the true target); each item once."""
    count = len(scores["index"])
    wrong = [i for i in options.indices if not 0 <= i < count]
    if wrong:
        raise ConfigError(f"explain.indices: {wrong[0]} is not a test index (0..{count - 1})")
    top = min(options.top, count)
    chosen = [(i, "chosen") for i in options.indices]
    chosen += [(int(i), "confident") for i in scores["confidence"].argsort(
        descending=True, stable=True)[:top]]
    chosen += [(int(i), "worst") for i in scores["true_score"].argsort(stable=True)[:top]]
    if not chosen:
        raise ConfigError("explain: nothing to explain: set explain.indices or explain.top > 0")
    seen: dict[int, str] = {}
    for position, why in chosen:
        seen.setdefault(position, why)
    return list(seen.items())


def explain_network(net: nn.Module, datamodule: SplitDataModule, targets: SaliencyTargets,
                    options: ExplainOptions, folder: Path) -> tuple[list[Path], dict[str, float]]:
    """Writes ``folder/<method>/<why>_<index>.png`` overlays (of the size of the image or crop
    explained; a signal's plot; a volume's middle slice), ``folder/explained.csv`` (per item)
    and ``folder/scores.json`` (per method); returns the files and the metrics
    ``explain/<method>/...`` of a run."""
    try:
        device = torch.device(options.device)
        net = net.to(device).eval()
    except (RuntimeError, AssertionError) as err:
        raise ConfigError(f"explain.device={options.device}: {str(err).splitlines()[0]}"
                          ) from None
    datamodule.setup()
    targets.check_network(net)
    example = test_items(datamodule, targets, [0], options.crop)["image"].to(device)
    methods = methods_for(options.methods, example, targets.methods, targets.methods_note)
    layer = target_layer_name(net, example, options.target_layer, targets.default_layer(net))
    reshape = targets.reshape_transform(net)
    scores = test_scores(net, datamodule, targets, options.crop)
    items = selected_items(scores, options)
    positions = [i for i, _ in items]
    batch = test_items(datamodule, targets, positions, options.crop)
    images = batch["image"].to(device)
    with torch.no_grad():
        predicted = targets.predicted(targets.outputs(net, images), batch["target"])
    map_targets = targets.map_targets(predicted)
    table = pd.DataFrame({"position": positions, "why": [w for _, w in items],
                          **{key: value[positions].tolist() for key, value in scores.items()}})
    if folder.exists():  # a previous explanation's files: replaced, not mixed in
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files: list[Path] = []
    metrics: dict[str, float] = {}
    report: dict[str, Any] = {"target_layer": layer, "options": asdict(options),
                              "input_shape": list(images.shape[1:]), "items": len(items),
                              "methods": {}}
    for method in methods:
        start = time.perf_counter()
        maps = saliency_maps(net, method, layer, images, map_targets, reshape)
        seconds = (time.perf_counter() - start) / len(items)
        (folder / method).mkdir()
        for item, ((position, why), image, saliency) in enumerate(
                zip(items, images, maps, strict=True)):
            path = folder / method / f"{why}_{position:05d}.png"
            picture = targets.annotate(overlay(image, saliency), predicted, item)
            Image.fromarray(picture).save(path)
            files.append(path)
        stages = cascading_randomisation(
            net, lambda model, m=method: saliency_maps(model, m, layer, images, map_targets,
                                                       reshape),
            maps, options.sanity_stages, options.seed)
        faithful = confidence_change(net, images, maps, targets.faithfulness_targets(predicted))
        randomized = stages[-1]["rank_corr"]
        flagged = bool(randomized >= options.max_rank_corr)
        report["methods"][method] = {"rank_corr_randomized": randomized,
                                     "rank_corr_top_layer": stages[0]["rank_corr"],
                                     "cascade": stages, "flagged": flagged,
                                     "confidence_change": faithful,
                                     "seconds_per_image": seconds}
        metrics.update({f"explain/{method}/rank_corr_randomized": randomized,
                        f"explain/{method}/rank_corr_top_layer": stages[0]["rank_corr"],
                        f"explain/{method}/sanity_flag": float(flagged),
                        f"explain/{method}/confidence_change": faithful,
                        f"explain/{method}/seconds_per_image": seconds})
    table.to_csv(folder / "explained.csv", index=False)
    (folder / "scores.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return [*files, folder / "explained.csv", folder / "scores.json"], metrics
