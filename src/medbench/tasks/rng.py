"""Random-number state saved in every checkpoint, so that a resumed run continues exactly."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch


class RngState(pl.Callback):
    """Saves torch, NumPy and Python RNG states with each checkpoint and restores them on
    resume (dropout masks and augmentations draw from them; Lightning saves none). Stored as
    tensors so the checkpoint still loads with ``torch.load(..., weights_only=True)``."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_rest": torch.tensor([pos, has_gauss], dtype=torch.int64),
            "numpy_cached": torch.tensor(cached, dtype=torch.float64),
            "python": torch.tensor(internal, dtype=torch.int64),
            "python_gauss": torch.tensor(float("nan") if gauss_next is None else gauss_next,
                                         dtype=torch.float64),
            "python_version": version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        pos, has_gauss = state["numpy_rest"].tolist()
        np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos,
                             has_gauss, float(state["numpy_cached"])))
        gauss = float(state["python_gauss"])
        random.setstate((state["python_version"], tuple(state["python"].tolist()),
                         None if np.isnan(gauss) else gauss))
