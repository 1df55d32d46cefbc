"""How long preparing MIT-BIH takes (once), and how fast an epoch of DS1 beats loads.

    python benchmark/ecg_prepare.py [--cache /tmp/ecg-bench]

Into a fresh cache folder (``MEDBENCH_CACHE_DIR``, default a temporary one): unpacks the
48 records from the mirror's tar.xz, prepares every record's beats (MLII, or channel 0 for
the paced 102 and 104 that lack it; 256 samples, 0.5-40 Hz band-pass, z-scored), reloads
them from the cache, then times one pass of the inter-patient training loader over DS1
(items per second). Prints one line per phase.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="cache folder (default: a new temp one)")
    options = parser.parse_args()
    os.environ["MEDBENCH_CACHE_DIR"] = options.cache or tempfile.mkdtemp(prefix="ecg-bench-")
    from medbench.data import ecg_prepare as prep
    from medbench.data.ecg import ARCHIVE, MITBIHDataModule
    from medbench.data.medmnist import default_data_root

    archive = default_data_root() / ARCHIVE
    band = {"low": 0.5, "high": 40.0, "order": 2}
    start = time.perf_counter()
    prep.unpack(archive)
    unpacked = time.perf_counter() - start
    start = time.perf_counter()
    mlii = [r for r in prep.ALL_RECORDS if r not in (102, 104)]
    beats = prep.prepare(archive, mlii, prep.check_settings("MLII", 256, band, "zscore"))
    beats |= prep.prepare(archive, [102, 104], prep.check_settings(0, 256, band, "zscore"))
    prepared = time.perf_counter() - start
    start = time.perf_counter()
    prep.prepare(archive, mlii, prep.check_settings("MLII", 256, band, "zscore"))
    reloaded = time.perf_counter() - start
    count = sum(len(b["labels"]) for b in beats.values())
    print(f"unpack 48 records: {unpacked:.1f} s; prepare {count} beats: {prepared:.1f} s; "
          f"reload from the cache: {reloaded:.2f} s")
    module = MITBIHDataModule(root=str(default_data_root()), bandpass=band,
                              val_records=[118, 207, 215], batch_size=256,
                              normalize={"mean": [0.0], "std": [1.0]})
    start = time.perf_counter()
    items = sum(len(batch["index"]) for batch in module.train_dataloader())
    seconds = time.perf_counter() - start
    print(f"one DS1 training epoch loaded: {items} beats in {seconds:.1f} s "
          f"({items / seconds:.0f} beats/s)")
    print(f"cache: {Path(os.environ['MEDBENCH_CACHE_DIR'])}")


if __name__ == "__main__":
    main()
