"""The survey's segmentation designs of Tables 11 and 12: each entry composes and its network
keeps the input size; the dense patch classifiers see exactly the paper's patch; one entry
trains end to end on real DRIVE images."""

from __future__ import annotations

import pytest
import torch

from medbench.models import create_model

ENTRIES = ["pereira2015_small_kernel_glioma", "havaei2017_two_pathway_cascaded",
           "zhao2016_multiscale_patch_cnn", "moeskops2016_multiscale_mr_brain",
           "kamnitsas2016_deepmedic_multipath_multiscale", "brosch2016_conv_encoder_ms_lesion",
           "shakeri2016_fcnn_mrf_subcortical", "su2015_fast_scanning_fcnn",
           "gordienko2017_unet_bone_shadow"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_builds_a_network_that_keeps_the_patch_size(make_cfg, entry):
    from medbench.catalog import catalog, select

    [meta] = select(entry, catalog())
    assert meta.runnable and meta.proxy and meta.family == "segmentation"
    cfg = make_cfg(f"experiment=survey/{entry}")
    net = create_model(cfg.model.name, 3, 2, **cfg.model.kwargs)
    patch = tuple(cfg.data.patch_size)
    out = net(torch.randn(1, 3, *patch))
    assert out.shape == (1, 2, *patch)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def _sees(net: torch.nn.Module, offset: int, size: int = 81) -> bool:
    """Whether the ring of pixels ``offset`` px off the centre changes the centre output."""
    net.eval()
    x = torch.randn(1, 1, size, size)
    moved, centre = x.clone(), size // 2
    ring = torch.zeros(size, size, dtype=torch.bool)
    ring[centre - offset:centre + offset + 1, centre - offset:centre + offset + 1] = True
    ring[centre - offset + 1:centre + offset, centre - offset + 1:centre + offset] = False
    moved[..., ring] += 10 * torch.randn(int(ring.sum()))
    with torch.no_grad():
        return not torch.allclose(net(moved)[0, :, centre, centre], net(x)[0, :, centre, centre])


@pytest.mark.parametrize(("name", "kwargs", "field"), [
    ("small_kernel_patch_cnn", {}, 33),  # Pereira 2015: 33x33 patches
    ("two_pathway_cnn", {"cascade": False}, 33),  # Havaei 2017: 33x33 TwoPathCNN
    ("two_pathway_cnn", {}, 65),  # the input cascade sees 65x65, as the paper's
])
def test_dense_patch_classifiers_see_the_papers_patch(name, kwargs, field):
    small = {"small_kernel_patch_cnn": {"widths": [4, 4], "dense": [8, 8]},
             "two_pathway_cnn": {"local": 4, "global_": 4}}[name]
    torch.manual_seed(0)
    net = create_model(name, 1, 2, **small, **kwargs)
    assert _sees(net, field // 2) and not _sees(net, field // 2 + 1)


def test_volume_designs_run_in_3d():
    for name in ("deepmedic", "conv_encoder_shortcut"):
        net = create_model(name, 1, 3, spatial_dims=3, widths=[4, 4], dense=[8]) \
            if name == "deepmedic" else create_model(name, 1, 3, spatial_dims=3, width=4)
        assert net(torch.randn(1, 1, 18, 20, 22)).shape == (1, 3, 18, 20, 22)


def test_multiscale_entry_trains_on_drive(data_dir, results_dir):
    from mlflow.tracking import MlflowClient

    from medbench.catalog import catalog, select
    from medbench.reproduce import QUICK, reproduce
    from medbench.train import train_run

    [run_id] = reproduce(
        select("zhao2016_multiscale_patch_cnn", catalog()), [0],
        [*QUICK, f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false",
         "data.max_images={train: 3, test: 1}", "data.patches_per_image=4"],
        train_run, log=lambda _: None)
    run = MlflowClient(f"sqlite:///{results_dir}/mlflow.db").get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["survey.id"].startswith("zhao2016")
    assert 0 <= run.data.metrics["test/dice"] <= 1 and 0 <= run.data.metrics["test/auc"] <= 1
