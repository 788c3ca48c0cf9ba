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
COLUMNS = ("layer", "layer_index", "epoch", "step", "bin_lo", "bin_hi", "count", "n_values", "dead_units")


def activation_histograms(artifacts, manifest: act.Manifest, bins: int = BINS, progress=None) -> pd.DataFrame:
    """One row per (record, layer, bin): how many of the layer's values (every unit on every probe
    sample) fall in the bin, with the record's share of dead units.

    Returns a table with columns layer (str), layer_index (int), epoch (float), step (int),
    bin_lo, bin_hi (float, the bin's edges in the activation's units; the last bin is closed),
    count (int), n_values (int: probe samples x width), dead_units (float in [0, 1]: units whose
    output is the same on every probe sample, e.g. a ReLU that never fires).

    Raises:
        FileNotFoundError: a file the manifest lists is missing.
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
        for rec in manifest.records:
            values = act.load_layer(artifacts, rec, name)
            counts, _ = np.histogram(values, bins=edges)
            dead = float(np.mean(values.max(axis=0) == values.min(axis=0)))
            for k in range(bins):
                rows.append((name, int(layer["index"]), float(rec["epoch"]), int(rec["step"]), float(edges[k]),
                             float(edges[k + 1]), int(counts[k]), int(values.size), dead))
            if progress:
                progress.update(task, advance=1, info=f"epoch {rec['epoch']:g} {name}")
    return pd.DataFrame(rows, columns=list(COLUMNS))
