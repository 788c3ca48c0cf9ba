"""The files a train run writes: epoch (float64) and step (int64) columns in every activation file
and table, plain-string metadata, gradient_stats.parquet as the README gives it, and files of the
first format (no epoch/step columns, JSON-quoted metadata) still read."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, run_json, seed_store

from ibcli import activations as act
from ibcli.results import load_gradients
from ibcli.store import Store
from ibcli.training import GRADIENTS

# ib12: 3482 train samples / batch 512 -> 7 steps per epoch; records at steps 1 and 3 fall inside epoch 1.
TRAIN = ["train", "--dataset", "ib12", "--model", "ib", "--epochs", "2", "--log-epochs", "all", "--log-steps", "1,3",
         "--batch-size", "512"]


@pytest.fixture
def trained(tmp_path, store_template, capsys):
    uri = seed_store(store_template, tmp_path)
    rid = run_json([*TRAIN, "--tracking-uri", uri], capsys)["run_id"]
    store = Store(uri)
    run = store.find_run(rid)
    return uri, store, run, store.artifacts(run)


def test_activation_files_carry_epoch_and_step(trained):
    _, _, _, arts = trained
    manifest = act.load_manifest(arts)
    assert json.loads(arts.local_path(act.MANIFEST).read_text())["format"] == "ibcli.activations/2"
    assert [r["step"] for r in manifest.records] == [0, 1, 3, 7, 14]
    assert [r["epoch"] for r in manifest.records] == pytest.approx([0, 1 / 7, 3 / 7, 1, 2])
    for rec in manifest.records:
        for layer, rel in rec["files"].items():
            path = arts.local_path(rel)
            table = pq.read_table(path)
            assert table.schema.field("epoch").type == pa.float64() and table.schema.field("step").type == pa.int64()
            assert set(table.column("epoch").to_pylist()) == {rec["epoch"]}  # fractional inside an epoch
            assert set(table.column("step").to_pylist()) == {rec["step"]}
            meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
            assert meta["layer"] == layer and float(meta["epoch"]) == rec["epoch"] and int(meta["step"]) == rec["step"]
            assert act.read_layer_metadata(path) == {"layer": layer, "epoch": rec["epoch"], "step": rec["step"]}
    # pandas reads a whole record file as a table of (activation, epoch, step)
    df = pd.read_parquet(arts.local_path(manifest.records[1]["files"]["layer5"]))
    assert list(df.columns) == ["activation", "epoch", "step"] and len(df) == 4096


def test_gradient_table_schema_matches_the_readme(trained):
    _, store, run, arts = trained
    table = pq.read_table(arts.local_path(GRADIENTS))
    assert table.schema.field("epoch").type == pa.float64() and table.schema.field("step").type == pa.int64()
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("`gradient_stats.parquet`"):]
    section = section[: section.index("\n\n")]
    documented = set(re.findall(r"`(\w+)`", section))
    assert set(table.column_names) <= documented, set(table.column_names) - documented


def test_mi_table_columns_match_the_readme():
    """Every mi.parquet column, with its type, is in the README's table (mine_seeds, mine_baseline
    and noise_samples were missing)."""
    from ibcli.mi_table import columns

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("| column | type | meaning |"):]
    section = section[: section.index("\n\n")]
    documented = {}
    for row in section.splitlines()[2:]:
        names_cell, types_cell = [cell.strip() for cell in row.strip("|").split("|")[:2]]
        names = re.findall(r"\b[a-z]\w*\b", names_cell.replace("(and i_xt_…)", ""))
        types = [t.strip() for t in types_cell.split(",")]
        for name, dtype in zip(names, types if len(types) == len(names) else types * len(names)):
            documented[name] = dtype
            if "(and i_xt_…)" in names_cell:
                documented[name.replace("i_ty_", "i_xt_")] = dtype
    assert {name: documented.get(name) for name in columns()} == columns()
    assert set(documented) <= set(columns()), set(documented) - set(columns())


def _to_format_1(arts) -> None:
    """Rewrite a run's activations as the first format wrote them: activation column only,
    json.dumps metadata, manifest format ibcli.activations/1; and gradient epochs as int64."""
    manifest_path = arts.local_path(act.MANIFEST)
    manifest = json.loads(manifest_path.read_text())
    for rec in manifest["records"]:
        for layer, rel in rec["files"].items():
            path = arts.local_path(rel)
            matrix = act.read_matrix(path)
            table = pa.table({"activation": act._matrix_column(matrix)})
            meta = {"layer": layer, "epoch": rec["epoch"], "step": rec["step"]}
            pq.write_table(table.replace_schema_metadata({k: json.dumps(v) for k, v in meta.items()}), path)
    manifest["format"] = "ibcli.activations/1"
    manifest_path.write_text(json.dumps(manifest))
    grads = pd.read_parquet(arts.local_path(GRADIENTS))
    grads.astype({"epoch": "int64"}).to_parquet(arts.local_path(GRADIENTS), index=False)


def test_files_of_the_first_format_still_read(trained, capsys):
    uri, store, run, arts = trained
    new = {l: act.load_layer(arts, act.load_manifest(arts).records[2], l) for l in ("layer1", "output")}
    _to_format_1(arts)
    manifest = act.load_manifest(arts)
    rec = manifest.records[2]
    assert pq.read_table(arts.local_path(rec["files"]["layer1"])).column_names == ["activation"]
    for layer, values in new.items():
        np.testing.assert_array_equal(act.load_layer(arts, rec, layer), values)
        assert act.read_layer_metadata(arts.local_path(rec["files"][layer])) == {
            "layer": layer, "epoch": rec["epoch"], "step": rec["step"]}
    assert load_gradients(store, run)["epoch"].dtype == np.float64
    out = run_json(["mi", run.info.run_id, "--tracking-uri", uri], capsys)
    assert out["records"] == 5 and out["rows"] == 5 * 6
    # a format-1 run keeps saying so when its manifest is rewritten (a resume adds records)
    assert json.loads(act.Manifest.from_json(arts.local_path(act.MANIFEST).read_text()).to_json())["format"] == "ibcli.activations/1"
    with pytest.raises(Exception, match="ibcli.activations/9"):
        act.Manifest.from_json(json.dumps({"format": "ibcli.activations/9"}))
