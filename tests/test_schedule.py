import pytest

from ibcli.errors import UserError
from ibcli.schedule import log_spaced, parse_epoch_schedule, parse_step_schedule


def test_epoch_schedules():
    assert parse_epoch_schedule("all", 5) == {1, 2, 3, 4, 5}
    assert parse_epoch_schedule("every:3", 10) == {3, 6, 9, 10}
    assert parse_epoch_schedule("2", 5) == {2, 4, 5}
    assert parse_epoch_schedule("none", 5) == set()
    assert parse_epoch_schedule("1,2,5", 5) == {1, 2, 5}
    # log:N is every epoch when epochs <= N, and N points, dense early, otherwise
    assert parse_epoch_schedule("log:30", 20) == set(range(1, 21))
    sched = parse_epoch_schedule("log:10", 1000)
    assert len(sched) == 10 and {1, 2, 1000} <= sched
    assert sorted(sched) == [1, 2, 5, 10, 22, 46, 100, 215, 464, 1000]


def test_log_spaced_count_and_ends():
    for upper, count in [(10, 3), (100, 20), (5000, 40)]:
        points = log_spaced(upper, count)
        assert len(points) == count and min(points) == 1 and max(points) == upper


def test_step_schedules_skip_epoch_ends():
    assert parse_step_schedule("none", 100) == set()
    assert parse_step_schedule("1,2,100,150", 100) == {1, 2, 150}
    steps = parse_step_schedule("log:5", 100)
    assert len(steps) == 4 and max(steps) < 100  # step 100 is the epoch end, left to --log-epochs
    assert max(parse_step_schedule("log:8:3", 100)) < 300


@pytest.mark.parametrize("spec", ["sometimes", "every:0", "log:0", "1,x"])
def test_bad_epoch_specs(spec):
    with pytest.raises(UserError, match="--log-epochs"):
        parse_epoch_schedule(spec, 10)


def test_epoch_list_out_of_range():
    with pytest.raises(UserError, match="outside"):
        parse_epoch_schedule("3,40", 10)


def test_bad_step_spec():
    with pytest.raises(UserError, match="--log-steps"):
        parse_step_schedule("log:", 10)
