"""Activation histograms streamed from a run's records: counts against numpy, fixed bins, dead units."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ibcli import activations as act
from ibcli.histograms import activation_histograms


class LocalArtifacts:
    """The part of `store.Artifacts` the readers use, over a plain folder."""

    def __init__(self, root: Path):
        self.root, self.run_id = root, "test-run"

    def local_path(self, relpath: str) -> Path:
        path = self.root / relpath
        if not path.exists():
            raise FileNotFoundError(relpath)
        return path


def _recorded(tmp_path: Path, values: dict[int, dict[str, np.ndarray]]) -> tuple[LocalArtifacts, act.Manifest]:
    """A run folder with one Parquet file per (step, layer) and the manifest listing them."""
    records = []
    for step, layers in values.items():
        files = {}
        for name, matrix in layers.items():
            rel = f"{act.PREFIX}/{act.record_name(step)}/{name}.parquet"
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            act.write_matrix_parquet(tmp_path / rel, {"activation": matrix})
            files[name] = rel
        records.append({"record": act.record_name(step), "epoch": step / 10, "step": step, "files": files})
    first = next(iter(values.values()))
    layers = [{"name": n, "index": i, "shape": [m.shape[1]], "width": m.shape[1]} for i, (n, m) in enumerate(first.items(), 1)]
    return LocalArtifacts(tmp_path), act.Manifest(layers=layers, records=records)


def test_counts_match_numpy_on_bins_fixed_over_all_records(tmp_path):
    rng = np.random.default_rng(0)
    early = np.tanh(rng.normal(0, 0.3, (200, 5))).astype(np.float32)
    late = np.tanh(rng.normal(0, 3.0, (200, 5))).astype(np.float32)  # saturates towards +-1
    relu = np.maximum(rng.normal(0, 1, (200, 4)), 0).astype(np.float32)
    relu[:, 1] = 0.0  # a dead unit: zero on every probe sample
    artifacts, manifest = _recorded(tmp_path, {0: {"t": early, "r": relu}, 10: {"t": late, "r": relu * 2}})
    hist = activation_histograms(artifacts, manifest, bins=8)
    assert list(hist.columns) == ["layer", "layer_index", "epoch", "step", "bin_lo", "bin_hi", "count", "n_values", "dead_units"]
    lo, hi = float(min(early.min(), late.min())), float(max(early.max(), late.max()))
    edges = np.linspace(lo, hi, 9)
    for step, matrix in ((0, early), (10, late)):
        g = hist[(hist["layer"] == "t") & (hist["step"] == step)].sort_values("bin_lo")
        np.testing.assert_allclose(g["bin_lo"], edges[:-1], rtol=1e-12)  # the same bins at every record
        np.testing.assert_array_equal(g["count"], np.histogram(matrix, bins=edges)[0])
        assert g["count"].sum() == g["n_values"].iloc[0] == 1000 and (g["dead_units"] == 0).all()
    t = hist[hist["layer"] == "t"]
    end_bins = t[(t["bin_lo"] == t["bin_lo"].min()) | (t["bin_hi"] == t["bin_hi"].max())]
    assert end_bins.groupby("step")["count"].sum()[10] > 5 * end_bins.groupby("step")["count"].sum()[0]  # saturation shows
    r = hist[hist["layer"] == "r"]
    assert (r["dead_units"] == 0.25).all() and (r["layer_index"] == 2).all()
    assert sorted(r["epoch"].unique()) == [0.0, 1.0]


def test_a_constant_layer_gets_one_bin_around_its_value(tmp_path):
    artifacts, manifest = _recorded(tmp_path, {0: {"c": np.full((10, 3), 0.5, np.float32)}})
    hist = activation_histograms(artifacts, manifest, bins=4)
    assert hist["count"].sum() == 30 and hist["bin_lo"].min() == 0.0 and hist["bin_hi"].max() == 1.0
    assert (hist["dead_units"] == 1.0).all()


def test_a_wide_layer_is_counted_on_the_same_subset_of_samples_at_every_record(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(100, 8)).astype(np.float32), rng.normal(size=(100, 8)).astype(np.float32)
    a[:, 0] = b[:, 0] = 1.0  # a dead unit, counted over every sample
    artifacts, manifest = _recorded(tmp_path, {0: {"w": a}, 10: {"w": b}})
    hist = activation_histograms(artifacts, manifest, bins=5, max_values=80, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(100, 10, replace=False))  # 80 values / width 8 = 10 samples
    edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 6)
    for step, matrix in ((0, a), (10, b)):
        g = hist[hist["step"] == step].sort_values("bin_lo")
        np.testing.assert_array_equal(g["count"], np.histogram(matrix[rows], bins=edges)[0])
        assert (g["n_values"] == 80).all() and (g["dead_units"] == 1 / 8).all()
