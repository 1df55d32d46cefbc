"""MIT-BIH beats as a binary task: normal (AAMI N) against abnormal (S, V, F) beat windows.

The source ``mitbih_binary``: the beats of ``data/ecg.py`` (either protocol, every option of
it but ``classes``) relabelled into two classes. ``negative`` (default ``[N]``) becomes label
0, ``positive`` (default ``[S, V, F]``) label 1; beats of the AAMI classes in neither (Q by
default) are dropped. ``max_beats_per_record`` keeps at most that many beats of each record
in each split, drawn at random (``split_seed``) without replacement, so the class balance of
every record is kept in expectation (a smaller run, not a re-balanced one). Groups (each
beat's record) follow the kept beats: cross-validation stays grouped by patient.

Written as the proxy of the CNN-LSTM of Lilhore et al. (2023; ``models/cnn_lstm.py``), whose
Parkinson's speech data is not in the mirror (``conf/data/mitbih_binary_proxy.yaml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from medbench.data import ecg_prepare as prep
from medbench.data.ecg import BeatSource, MITBIHDataModule
from medbench.data.registry import register_datamodule
from medbench.errors import ConfigError


@register_datamodule("mitbih_binary")
class MITBIHBinaryDataModule(MITBIHDataModule):
    """MIT-BIH beats, ``negative`` classes against ``positive`` ones (label 1)."""

    def __init__(self, negative: Sequence[str] = ("N",), positive: Sequence[str] = ("S", "V", "F"),
                 label_names: Sequence[str] = ("normal", "abnormal"),
                 max_beats_per_record: int | None = None, name: str = "mitbih_binary",
                 **kwargs) -> None:
        if "classes" in kwargs:
            raise ConfigError("data.classes: not an option of the mitbih_binary source; set "
                              "data.negative and data.positive (AAMI classes) instead")
        negative, positive = [str(c) for c in negative], [str(c) for c in positive]
        both = [*negative, *positive]
        if not negative or not positive or len(set(both)) != len(both) or not set(both) <= set(
                prep.AAMI_CLASSES):
            raise ConfigError(f"data.negative / data.positive: expected two non-empty, disjoint "
                              f"lists of AAMI classes {prep.AAMI_CLASSES}, got {negative} and "
                              f"{positive}")
        if len(label_names) != 2:
            raise ConfigError(f"data.label_names: expected two names (negative, positive), got "
                              f"{list(label_names)}")
        if max_beats_per_record is not None and (not isinstance(max_beats_per_record, int)
                                                 or max_beats_per_record < 1):
            raise ConfigError(f"data.max_beats_per_record: expected a positive integer or null, "
                              f"got {max_beats_per_record!r}")
        super().__init__(name=name, classes=both, **kwargs)
        self.negative, self.positive = negative, positive
        self.max_beats_per_record = max_beats_per_record
        self.info = replace(self.info, num_classes=2, label_type="binary",
                            label_names=[str(n) for n in label_names])

    def load_splits(self) -> dict[str, tuple[BeatSource, np.ndarray]]:
        splits = {}
        for split, (source, labels) in super().load_splits().items():
            keep = self._kept(self.groups[split])
            # labels index data.classes = negative + positive: the positive ones become 1
            binary = (labels[keep] >= len(self.negative)).astype(np.int64)
            splits[split] = (BeatSource(source.beats[keep]), binary)
            self.groups[split] = self.groups[split][keep]
            self.beat_samples[split] = self.beat_samples[split][keep]
        return splits

    def _kept(self, records: np.ndarray) -> np.ndarray:
        """Indices of the beats kept: all, or ``max_beats_per_record`` of each record."""
        if self.max_beats_per_record is None:
            return np.arange(len(records))
        kept = []
        for record in np.unique(records):
            index = np.flatnonzero(records == record)
            if len(index) > self.max_beats_per_record:
                rng = np.random.default_rng([self.split_seed, int(record)])
                index = rng.choice(index, self.max_beats_per_record, replace=False)
            kept.append(index)
        return np.sort(np.concatenate(kept))
