"""The project-side tooling of the Czyz et al. 2023 benchmark (benchmarks/bmi_*.py) on a small fake cache.

The real cache needs the benchmark's own venv; these tests write a cache of the same layout by hand.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bmi_mae  # noqa: E402
import bmi_samples  # noqa: E402
from bmi_tasks import load_tasks, sample_path  # noqa: E402

from ibcli.errors import UserError  # noqa: E402

RHO = 0.8
TRUE_MI = -0.5 * np.log(1 - RHO**2)  # bivariate normal, nats


def _write_cache(root: Path, seeds=(0, 1), n=600) -> Path:
    tasks = [("gauss-a", "Gauss A 1 × 1"), ("gauss-b", "Gauss B 1 × 1")]
    for position, (task_id, name) in enumerate(tasks):
        for seed in seeds:
            rng = np.random.default_rng(100 * position + seed)
            x = rng.standard_normal((n, 1))
            y = RHO * x + np.sqrt(1 - RHO**2) * rng.standard_normal((n, 1))
            np.savez(sample_path(root, task_id, seed), x=x, y=y, mi_true_nats=TRUE_MI, task_id=task_id,
                     task_name=name, seed=seed, ksg_bmi_nats=TRUE_MI + 0.01 * (seed + 1))
    index = {"seeds": list(seeds), "n_samples": n,
             "tasks": [{"position": i, "task_id": t, "task_name": nm, "dim_x": 1, "dim_y": 1,
                        "mi_true_nats": TRUE_MI} for i, (t, nm) in enumerate(tasks)]}
    (root / "index.json").write_text(json.dumps(index))
    return root


def test_load_tasks_order_filter_and_missing(tmp_path):
    cache = _write_cache(tmp_path)
    got = load_tasks(cache, seeds=(1, 0))
    assert [(s.task_id, s.seed) for s in got] == [("gauss-a", 1), ("gauss-a", 0), ("gauss-b", 1), ("gauss-b", 0)]
    assert got[0].x.shape == (600, 1) and got[0].x.dtype == np.float64
    assert got[0].ksg_bmi_nats == pytest.approx(TRUE_MI + 0.02)
    assert [s.task_id for s in load_tasks(cache, tasks="B 1")] == ["gauss-b"]
    with pytest.raises(UserError, match="seeds 5"):
        load_tasks(cache, seeds=(5,))
    with pytest.raises(UserError, match="no bmi task"):
        load_tasks(cache, tasks="student")
    with pytest.raises(UserError, match="index.json"):
        load_tasks(tmp_path / "nowhere")


def test_mae_matches_rows_and_bmi_ksg_offsets(tmp_path, capsys):
    cache = _write_cache(tmp_path)
    out = tmp_path / "mae.json"
    assert bmi_mae.main(["--method", "kraskov", "--param", "k=3", "--cache", str(cache), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["params"] == {"k": 3} and result["seeds"] == [0, 1] and len(result["rows"]) == 4
    for seed in (0, 1):
        rows = [r for r in result["rows"] if r["seed"] == seed]
        expected = np.mean([abs(r["ibcli_nats"] - TRUE_MI) for r in rows])
        assert result["mae_per_seed"][str(seed)]["ibcli"] == pytest.approx(expected, abs=1e-12)
        # bmi's KSG was stored as truth + 0.01 (seed + 1) on both tasks.
        assert result["mae_per_seed"][str(seed)]["bmi_ksg"] == pytest.approx(0.01 * (seed + 1), abs=1e-12)
        # KSG on 600 correlated Gaussians: within 0.1 nats of the truth 0.511.
        assert all(abs(r["ibcli_nats"] - TRUE_MI) < 0.1 for r in rows)
    assert result["summary"]["bmi_ksg"]["sd"] == pytest.approx(np.std([0.01, 0.02], ddof=1), abs=1e-12)
    text = capsys.readouterr().out
    assert "Gauss A 1 × 1" in text and "MAE mean" in text


def test_estimator_error_is_one_line_exit_2(tmp_path, capsys):
    cache = _write_cache(tmp_path)
    assert bmi_mae.main(["--method", "kraskov", "--param", "bogus=1", "--cache", str(cache)]) == 2
    assert "error: Gauss A 1 × 1 seed 0:" in capsys.readouterr().err


def test_parse_param_and_bad_param():
    assert bmi_mae.parse_param("k=3") == ("k", 3)
    assert bmi_mae.parse_param("lr=1e-3") == ("lr", 0.001)
    assert bmi_mae.parse_param("device=cpu") == ("device", "cpu")
    assert bmi_mae.parse_param("hidden=(64, 64)") == ("hidden", (64, 64))
    with pytest.raises(UserError):
        bmi_mae.parse_param("k")


def test_cache_complete_needs_40_tasks_and_every_seed(tmp_path):
    cache = _write_cache(tmp_path, seeds=(0,))
    assert not bmi_samples.cache_complete(cache, [0])  # 2 tasks, not 40
    index = json.loads((cache / "index.json").read_text())
    index["tasks"] = [dict(index["tasks"][i % 2], task_id=["gauss-a", "gauss-b"][i % 2]) for i in range(40)]
    (cache / "index.json").write_text(json.dumps(index))
    assert bmi_samples.cache_complete(cache, [0])
    assert not bmi_samples.cache_complete(cache, [0, 1])
