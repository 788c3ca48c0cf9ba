"""`ibcli mi` with settings it has already computed reuses the finished mi run (unless --force);
any change to the numbers' settings computes anew; a wrong --layer/--epoch creates no run."""

from __future__ import annotations

import pytest

from conftest import ib12_train, run_cli, run_json, seed_store

from ibcli.activations import Manifest
from ibcli.errors import UserError
from ibcli.estimators.interface import Estimator, Param
from ibcli.mi_table import Selection, select
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


def test_an_epoch_is_echoed_as_typed(trained, capsys):
    uri, rid = trained
    for typed in ("7.50", "2.0000001", "1e1"):
        code, _, err = run_cli(["mi", rid, "--tracking-uri", uri, "--epoch", typed, "--quiet"], capsys)
        assert code == 2 and err.strip() == f"error: epoch {typed} was not recorded: this run recorded epochs 0, 1, 2, 3", err
    code, _, err = run_cli(["mi", rid, "--tracking-uri", uri, "--epoch", "two", "--quiet"], capsys)
    assert code == 2 and err.strip() == "error: --epoch takes a number, got 'two'", err
    assert _mi_runs(uri, rid) == []
    out = _mi(uri, rid, capsys, "--epoch", "2.000000", "--epoch", "3")
    assert out["records"] == 2


def _manifest(epochs) -> Manifest:
    return Manifest(layers=[{"name": "a", "index": 1}],
                    records=[{"record": f"r{i}", "epoch": e, "step": i, "files": {"a": f"r{i}/a.parquet"}} for i, e in enumerate(epochs)])


def test_an_epoch_inside_an_epoch_is_picked_with_the_digits_printed():
    """Records at steps 1, 4 and 13 of a 47-step epoch: ibcli lists them as 0.0212766, 0.0851064
    and 0.276596 (6 significant digits); that many digits or more pick the record, fewer do not."""
    epochs = [0.0, 1 / 47, 4 / 47, 13 / 47, 1.0]
    m = _manifest(epochs)
    for typed, want in (("0.0212766", 1 / 47), ("0.02127660", 1 / 47), ("0.021276596", 1 / 47), (repr(1 / 47), 1 / 47),
                        (1 / 47, 1 / 47), ("0.276596", 13 / 47), ("1", 1.0), ("1.00000000", 1.0), ("0", 0.0), (1, 1.0)):
        assert [r["epoch"] for r in select(m, (), (typed,)).records] == [want], typed
    for typed in ("0.0213", "0.021277", "0.02127659", "0.28", "1.000001"):
        with pytest.raises(UserError, match=f"^epoch {typed} was not recorded: this run recorded epochs "
                                            "0, 0.0212766, 0.0851064, 0.276596, 1$"):
            select(m, (), (typed,))
    # several records in the order recorded, each once
    assert [r["step"] for r in select(m, (), ("1", "0.0212766", "0.02127659574468085")).records] == [1, 4]


def test_an_epoch_matching_two_records_is_refused():
    close = _manifest([999.0, 1000.0001, 1000.0002, 1000.01])  # ibcli lists 999, 1000, 1000, 1000.01
    with pytest.raises(UserError, match=r"^epoch 1000 matches 2 recorded epochs \(1000.0001, 1000.0002\): type more digits$"):
        select(close, (), ("1000",))
    assert [r["step"] for r in select(close, (), ("1000.0002",)).records] == [2]
    assert [r["step"] for r in select(_manifest([1000.0, 1000.0001]), (), ("1000",)).records] == [0]  # an exact value wins


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
