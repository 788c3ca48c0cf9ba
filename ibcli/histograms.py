"""Each layer's activation distribution over training, streamed from a train run's records.

Computed at plot time from the Parquet files the run already has, one (record, layer) in memory
at a time: the training loop does no extra work and every existing run gets the figure. The
bins are fixed per layer (equal width over the layer's range across every record, as binning's
edges), so the histograms of different epochs compare directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ibcli import activations as act
from ibcli.mi_table import RecordedLayers

BINS = 60
# Values counted per (record, layer): a wider layer is counted on a seeded subset of the probe
# samples (every unit, the same samples at every record); 2**21 values resolve shares down to
# 1e-6, far below what a figure shows, and keep a 10 000 x 1024 record to a fraction of a second.
MAX_VALUES = 2**21
COLUMNS = ("layer", "layer_index", "epoch", "step", "bin_lo", "bin_hi", "count", "n_values", "dead_units")


def activation_histograms(artifacts, manifest: act.Manifest, bins: int = BINS, max_values: int = MAX_VALUES,
                          seed: int = 0, progress=None) -> pd.DataFrame:
    """One row per (record, layer, bin): how many of the layer's values (every unit on every probe
    sample, or on a seeded subset of the samples when samples x width > `max_values`) fall in the
    bin, with the record's share of dead units (always over every sample).

    Returns a table with columns layer (str), layer_index (int), epoch (float), step (int),
    bin_lo, bin_hi (float, the bin's edges in the activation's units; the last bin is closed),
    count (int), n_values (int: the values counted, samples x width), dead_units (float in
    [0, 1]: units whose output is the same on every probe sample, e.g. a ReLU that never fires).

    Raises:
        UserError: a file the manifest lists is missing or unreadable.
    """
    recorded = RecordedLayers(artifacts, manifest)
    rows = []
    task = progress.add_task("histograms", total=len(manifest.records) * len(manifest.layers), info="") if progress else None
    for layer in manifest.layers:
        name = layer["name"]
        lo, hi = recorded.value_range(name)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        if hi <= lo:  # a constant layer: one bin around its value
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        subset = None
        for rec in manifest.records:
            values = act.load_layer(artifacts, rec, name)
            dead = float(np.mean(values.max(axis=0) == values.min(axis=0)))
            if subset is None:  # the same samples for every record of the layer
                n, width = values.shape
                keep = max(1, max_values // max(1, width))
                subset = np.sort(np.random.default_rng(seed).choice(n, keep, replace=False)) if keep < n else slice(None)
            counted = values[subset]
            counts, _ = np.histogram(counted, bins=edges)
            for k in range(bins):
                rows.append((name, int(layer["index"]), float(rec["epoch"]), int(rec["step"]), float(edges[k]),
                             float(edges[k + 1]), int(counts[k]), int(counted.size), dead))
            if progress:
                progress.update(task, advance=1, info=f"epoch {rec['epoch']:g} {name}")
    return pd.DataFrame(rows, columns=list(COLUMNS))
