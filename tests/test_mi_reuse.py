"""`ibcli mi` with settings it has already computed reuses the finished mi run (unless --force);
any change to the numbers' settings computes anew; a wrong --layer/--epoch creates no run."""

from __future__ import annotations

import pytest

from conftest import ib12_train, run_cli, run_json, seed_store

from ibcli.estimators.interface import Estimator, Param
from ibcli.mi_table import Selection
from ibcli.stages.mi import MI_KEY_TAG, mi_key
from ibcli.store import Store

TRAIN = ib12_train(3)


@pytest.fixture
def trained(tmp_path, store_template, capsys):
    uri = seed_store(store_template, tmp_path)
    run_id = run_json([*TRAIN, "--tracking-uri", uri], capsys)["run_id"]
    return uri, run_id


def _mi(uri, run_id, capsys, *args):
    return run_json(["mi", run_id, "--tracking-uri", uri, *args], capsys)


def _mi_runs(uri, run_id):
    return Store(uri).children(run_id, stage="mi")


def test_same_settings_reuse_the_finished_mi_run(trained, capsys):
    uri, rid = trained
    first = _mi(uri, rid, capsys, "--method", "binning", "--bins", "10")
    assert first["reused"] is False
    tag = Store(uri).find_run(first["mi_run_id"]).data.tags[MI_KEY_TAG]
    # the same numbers: the device is not part of them, nor the run id's spelling
    again = _mi(uri, rid[:10], capsys, "--method", "binning", "--bins", "10", "--device", "cpu")
    assert again["reused"] is True and again["mi_run_id"] == first["mi_run_id"]
    assert again["layers"] == first["layers"] and len(_mi_runs(uri, rid)) == 1
    # --force computes again, with the same key
    forced = _mi(uri, rid, capsys, "--method", "binning", "--bins", "10", "--force")
    assert forced["reused"] is False and forced["mi_run_id"] != first["mi_run_id"]
    assert Store(uri).find_run(forced["mi_run_id"]).data.tags[MI_KEY_TAG] == tag
    # each change of what the numbers depend on computes anew
    n = 2
    for change in (["--bins", "11"], ["--binning", "adaptive"], ["--seed", "1"], ["--epoch", "1", "--epoch", "3"],
                   ["--layer", "layer5"]):
        out = _mi(uri, rid, capsys, "--method", "binning", "--bins", "10", *change)
        n += 1
        assert out["reused"] is False and len(_mi_runs(uri, rid)) == n, change
    # and the subset again is reused, whatever the order it is asked in
    out = _mi(uri, rid, capsys, "--method", "binning", "--bins", "10", "--epoch", "3", "--epoch", "1")
    assert out["reused"] is True and len(_mi_runs(uri, rid)) == n


def test_a_failed_or_other_method_run_is_not_reused(trained, capsys):
    uri, rid = trained
    s = Store(uri)
    first = _mi(uri, rid, capsys, "--method", "binning")
    s.finish(first["mi_run_id"], "FAILED", "pretend")
    again = _mi(uri, rid, capsys, "--method", "binning")
    assert again["reused"] is False and again["mi_run_id"] != first["mi_run_id"]
    kde = _mi(uri, rid, capsys, "--method", "kde", "--noise-var", "0.1", "--layer", "output")
    assert kde["reused"] is False


def test_wrong_layer_or_epoch_creates_no_run(trained, capsys):
    uri, rid = trained
    for args, words in ((["--layer", "layer9"], "unknown layer 'layer9'"), (["--epoch", "7.5"], "epoch 7.5 was not recorded")):
        code, out, err = run_cli(["mi", rid, "--tracking-uri", uri, *args], capsys)
        assert code == 2 and err.strip().splitlines() == [err.strip()] and words in err, err
    assert _mi_runs(uri, rid) == []


class _Toy(Estimator):
    name = "toy"
    title = "toy"
    params = (Param("bins", int, 30, "bins"), Param("workers", int, 1, "threads", affects_result=False))


def test_the_key_leaves_out_speed_options():
    sel = Selection(records=[{"step": 0}, {"step": 7}], layers=["a", "b"])
    key = mi_key(_Toy(), {"bins": 30, "workers": 1}, 0, sel)
    assert key == mi_key(_Toy(), {"bins": 30, "workers": 8}, 0, sel)
    assert key == mi_key(_Toy(), {"bins": 30, "workers": 1}, 0, Selection(sel.records, ["b", "a"]))
    assert key != mi_key(_Toy(), {"bins": 31, "workers": 1}, 0, sel)
    assert key != mi_key(_Toy(), {"bins": 30, "workers": 1}, 1, sel)
    assert key != mi_key(_Toy(), {"bins": 30, "workers": 1}, 0, Selection(sel.records[:1], sel.layers))
    # the same step recorded again with other values (a resume re-records after its checkpoint)
    again = [{"step": 0}, {"step": 7, "range": {"a": [-1.0, 0.9]}}]
    assert key != mi_key(_Toy(), {"bins": 30, "workers": 1}, 0, Selection(again, sel.layers))
