"""Retention: restic's documented semantics, and drkit's safety rules as properties."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drkit.policy.retention import Duration, Item, Policy, Verdict, apply_policy, parse_duration, parse_policy, plan

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 5, 0, 30, tzinfo=UTC)  # a Monday


def daily(n: int, start: dt.datetime = T0) -> list[Item]:
    return [Item(f"d{i:03d}", start + dt.timedelta(days=i)) for i in range(n)]


def kept(items: list[Item], policy: str, now: dt.datetime | None = None) -> list[str]:
    now = now or max(i.time for i in items) + dt.timedelta(hours=1)
    return sorted(d.id for d in plan(items, parse_policy(policy), now) if d.verdict is not Verdict.DELETE)


# --- restic's documented examples (doc/060_forget.rst) ---------------------------------------

def test_daily_and_weekly_are_ored_with_shared_counts() -> None:
    # "daily backups with --keep-daily 7 --keep-weekly 5 give 7 dailies + 4 extra weeklies"
    # (when the 7 dailies are one ISO week, i.e. the newest is a Sunday)
    start = T0 + dt.timedelta(days=3)  # a Thursday: day 59 is a Sunday
    items = daily(60, start)
    assert items[-1].time.isoweekday() == 7
    result = kept(items, "keep_daily=7 keep_weekly=5")
    assert len(result) == 11
    newest_seven = [f"d{i:03d}" for i in range(53, 60)]
    assert set(newest_seven) <= set(result)
    extra = sorted(set(result) - set(newest_seven))
    # the extra ones are the newest backup of each of the 4 earlier ISO weeks: Sundays
    assert all((start + dt.timedelta(days=int(x[1:]))).isoweekday() == 7 for x in extra)
    # newest mid-week (Thursday): two weeks overlap the dailies, so one weekly fewer is extra
    assert len(kept(daily(60), "keep_daily=7 keep_weekly=5")) == 10


def test_empty_buckets_do_not_count() -> None:
    # one backup every third day: keep_daily=3 keeps the last three days *that have backups*
    items = [Item(f"b{i}", T0 + dt.timedelta(days=3 * i)) for i in range(10)]
    assert kept(items, "keep_daily=3") == ["b7", "b8", "b9"]


def test_newest_in_each_bucket_is_the_one_kept() -> None:
    items = [Item(f"h{i:02d}", T0 + dt.timedelta(minutes=10 * i)) for i in range(12)]  # two hours
    # 00:30 .. 02:20 in 10-minute steps: hours 00, 01, 02; the newest of the last two hours
    assert kept(items, "keep_hourly=2") == ["h08", "h11"]  # 01:50 and 02:20


def test_oldest_is_kept_while_a_count_is_not_used_up() -> None:
    items = daily(3)
    keep = apply_policy(items, parse_policy("keep_daily=10"), T0 + dt.timedelta(days=5))
    assert set(keep) == {"d000", "d001", "d002"}
    # several in the oldest bucket: the newest of the bucket and, additionally, the very oldest
    items = [Item("a", T0), Item("b", T0 + dt.timedelta(hours=1)), Item("c", T0 + dt.timedelta(days=1))]
    keep = apply_policy(items, parse_policy("keep_daily=5"), T0 + dt.timedelta(days=2))
    assert set(keep) == {"a", "b", "c"}
    assert keep["a"] == ["oldest daily"]


def test_keep_within_is_relative_to_the_newest_backup_not_now() -> None:
    items = daily(10)
    far_future_now = T0 + dt.timedelta(days=400)
    assert kept(items, "keep_within=3d", far_future_now) == ["d007", "d008", "d009"]


def test_keep_within_daily_keeps_one_per_day_inside_the_window() -> None:
    items = [Item(f"x{i:03d}", T0 + dt.timedelta(hours=6 * i)) for i in range(40)]  # 10 days, 4 a day
    result = kept(items, "keep_within_daily=3d")
    # newest is day 9 18:30; the window is strictly after day 6 18:30, so day 6 has nothing inside
    assert result == ["x031", "x035", "x039"]


def test_operators_plan_hourly_for_7_days_dailies_for_30() -> None:
    items = [Item(f"h{i:04d}", T0 + dt.timedelta(hours=i)) for i in range(24 * 60)]  # 60 days hourly
    result = kept(items, "keep_within_hourly=7d keep_within_daily=30d")
    newest = items[-1].time
    hourly = [i for i in items if i.time > newest - dt.timedelta(days=7)]
    assert {i.id for i in hourly} <= set(result)
    older = [i for i in items if i.id in result and i.time <= newest - dt.timedelta(days=7)]
    assert all(i.time.hour == 23 for i in older)  # the last backup of each older day
    assert min(i.time for i in items if i.id in result) > newest - dt.timedelta(days=30)
    assert len(result) == len(hourly) + 23  # 7*24 hourly + the 23 remaining days of the 30


def test_all_backups_in_the_future() -> None:
    now = T0
    items = daily(3, T0 + dt.timedelta(days=1))
    assert kept(items, "keep_within=1d", now) == ["d000", "d001", "d002"]


def test_future_dated_backups_are_not_latest_and_are_protected() -> None:
    now = T0 + dt.timedelta(days=5)
    items = daily(5) + [Item("future", now + dt.timedelta(days=30))]
    decisions = {d.id: d for d in plan(items, parse_policy("keep_within=1d"), now)}
    assert decisions["d004"].verdict is Verdict.KEEP  # within 1d of the newest *past* backup
    assert decisions["future"].verdict is not Verdict.DELETE


def test_a_callers_keep_reason_protects_an_item_the_policy_drops() -> None:
    now = T0 + dt.timedelta(days=200)
    items = daily(3) + [Item("recent", now - dt.timedelta(days=1))]
    items[0] = Item("d000", items[0].time, keep_reason="newest archive where grafana succeeded")
    decisions = {d.id: d for d in plan(items, parse_policy("keep_within=90d"), now)}
    assert decisions["d000"].verdict is Verdict.PROTECTED
    assert decisions["d000"].reasons == ("newest archive where grafana succeeded",)
    assert decisions["d001"].verdict is Verdict.DELETE and decisions["recent"].verdict is Verdict.KEEP


def test_iso_weeks_cross_the_year_boundary() -> None:
    # 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53
    items = [Item(f"y{i}", dt.datetime(2026, 12, 27, tzinfo=UTC) + dt.timedelta(days=i)) for i in range(9)]
    # y8 is 2027-W01, y1..y7 are 2026-W53 (newest y7), y0 is W52: the count is used up before it
    assert kept(items, "keep_weekly=2") == ["y7", "y8"]
    assert kept(items, "keep_weekly=5") == ["y0", "y7", "y8"]


def test_month_arithmetic_matches_go_adddate() -> None:
    assert Duration(months=1).before(dt.datetime(2026, 3, 31, tzinfo=UTC)) == dt.datetime(2026, 3, 3, tzinfo=UTC)
    assert Duration(years=1).before(dt.datetime(2028, 2, 29, tzinfo=UTC)) == dt.datetime(2027, 3, 1, tzinfo=UTC)
    assert Duration(days=1, hours=2).before(dt.datetime(2026, 1, 1, 1, tzinfo=UTC)) == dt.datetime(2025, 12, 30, 23, tzinfo=UTC)


# --- parsing -------------------------------------------------------------------------------

def test_parse_policy_forms() -> None:
    p = parse_policy("keep_last=3, daily=7 keep-weekly=unlimited keep_within=1y2m3d4h keep_within_hourly=2w")
    assert (p.last, p.daily, p.weekly) == (3, 7, -1)
    assert p.within == Duration(1, 2, 3, 4) and p.within_hourly == Duration(days=14)
    assert str(parse_policy(str(p))) == str(p)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("keep_daily", "key=value"),
    ("keep_daily=0", "positive"),
    ("keep_daily=-2", "positive"),
    ("keep_dialy=7", "unknown retention rule"),
    ("keep_within=7days", "not a duration"),
    ("keep_daily=1 daily=2", "twice"),
])
def test_parse_policy_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_policy(text)


def test_parse_duration() -> None:
    assert parse_duration("7d") == Duration(days=7)
    assert parse_duration("36h") == Duration(hours=36)
    with pytest.raises(ValueError):
        parse_duration("")


# --- safety rules: examples, then properties ------------------------------------------------

def test_pinned_backup_survives_any_policy() -> None:
    items = daily(10)
    items[0] = Item("d000", items[0].time, pinned=True)
    decisions = {d.id: d for d in plan(items, parse_policy("keep_last=1"), T0 + dt.timedelta(days=11))}
    assert decisions["d000"].verdict is Verdict.PINNED
    assert [d for d in decisions.values() if d.verdict is Verdict.DELETE] and decisions["d009"].verdict is Verdict.KEEP


def test_newest_verified_backup_is_protected() -> None:
    items = daily(10)
    items[2] = Item("d002", items[2].time, verified=True)
    items[1] = Item("d001", items[1].time, verified=True)
    decisions = {d.id: d for d in plan(items, parse_policy("keep_last=1"), T0 + dt.timedelta(days=11))}
    assert decisions["d002"].verdict is Verdict.PROTECTED
    assert decisions["d002"].reasons == ("newest verified backup",)
    assert decisions["d001"].verdict is Verdict.DELETE  # only the newest verified one is protected


def test_incomplete_entries_never_count_nor_get_deleted() -> None:
    old_done = Item("old", T0)
    newer_incomplete = [Item(f"inc{i}", T0 + dt.timedelta(days=i + 1), done=False) for i in range(5)]
    decisions = {d.id: d for d in plan([old_done, *newer_incomplete], parse_policy("keep_last=1"), T0 + dt.timedelta(days=9))}
    assert decisions["old"].verdict is Verdict.KEEP  # incomplete entries did not use up keep_last
    assert all(decisions[i.id].verdict is Verdict.IGNORED for i in newer_incomplete)


def test_newest_completed_backup_is_labelled_protected() -> None:
    decisions = plan(daily(3), parse_policy("keep_last=1"), T0 + dt.timedelta(days=4))
    assert "newest completed backup" in decisions[0].reasons and decisions[0].id == "d002"


items_st = st.lists(
    st.builds(
        Item,
        id=st.uuids().map(lambda u: u.hex[:10]),
        time=st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 12, 31),
                          timezones=st.just(UTC)),
        done=st.booleans(),
        pinned=st.integers(0, 3).map(lambda n: n == 0),
        verified=st.integers(0, 3).map(lambda n: n == 0),
    ),
    max_size=60, unique_by=lambda i: i.id,
)
count_st = st.sampled_from([0, 0, 1, 2, 5, -1])
within_st = st.sampled_from([Duration(), Duration(), Duration(hours=6), Duration(days=3), Duration(months=1)])
policy_st = st.builds(Policy, last=count_st, hourly=count_st, daily=count_st, weekly=count_st, monthly=count_st,
                      yearly=count_st, within=within_st, within_hourly=within_st, within_daily=within_st,
                      within_weekly=within_st)
now_st = st.datetimes(min_value=dt.datetime(2026, 6, 1), max_value=dt.datetime(2027, 6, 1), timezones=st.just(UTC))


@settings(max_examples=400, deadline=None)
@given(items_st, policy_st, now_st)
def test_safety_rules_hold_for_any_policy(items: list[Item], policy: Policy, now: dt.datetime) -> None:
    decisions = plan(items, policy, now)
    by_id = {d.id: d for d in decisions}
    assert sorted(by_id) == sorted(i.id for i in items)  # one decision per item
    deleted = {d.id for d in decisions if d.verdict is Verdict.DELETE}
    done = sorted((i for i in items if i.done), key=lambda i: (i.time, i.id), reverse=True)
    if done:
        assert done[0].id not in deleted  # newest completed backup
    verified = [i for i in done if i.verified]
    if verified:
        assert verified[0].id not in deleted  # newest verified backup
    for i in items:
        if i.pinned and i.done:
            assert i.id not in deleted  # pinned
        if not i.done:
            assert by_id[i.id].verdict is Verdict.IGNORED  # never counted, never deleted
        if i.time >= now:
            assert i.id not in deleted  # future-dated
    if policy.is_empty():
        assert not deleted
    if policy.last > 0:
        assert len([d for d in decisions if d.verdict is not Verdict.DELETE and by_id[d.id].verdict
                    is not Verdict.IGNORED]) >= min(policy.last, len(done))


@settings(max_examples=200, deadline=None)
@given(items_st, policy_st, now_st, st.randoms())
def test_plan_does_not_depend_on_input_order(items: list[Item], policy: Policy, now: dt.datetime,
                                             rnd: random.Random) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert plan(items, policy, now) == plan(shuffled, policy, now)


@settings(max_examples=200, deadline=None)
@given(items_st, policy_st, now_st)
def test_a_kept_backup_stays_kept_when_rules_are_added(items: list[Item], policy: Policy, now: dt.datetime) -> None:
    """ORed rules: adding keep_last=1 can only keep more (monotone)."""
    wider = Policy(**{**policy.__dict__, "last": policy.last if policy.last else 1})
    before = {d.id for d in plan(items, policy, now) if d.verdict is not Verdict.DELETE}
    after = {d.id for d in plan(items, wider, now) if d.verdict is not Verdict.DELETE}
    if not policy.is_empty():
        assert before <= after


def test_backups_that_share_the_newest_second_are_all_kept() -> None:
    """Ids carry seconds: a pinned backup and the next one in that second, the new id sorting lower."""
    t = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
    items = [Item("20261130T120000Z-ffffff", t, pinned=True), Item("20261130T120000Z-eeeeee", t),
             Item("20261130T110000Z-aaaaaa", t - dt.timedelta(hours=1))]
    decisions = {d.id: d for d in plan(items, parse_policy("keep_last=1"), t + dt.timedelta(seconds=1))}
    assert not decisions["20261130T120000Z-eeeeee"].deletes
    assert "newest completed backup" in decisions["20261130T120000Z-eeeeee"].reasons
    assert decisions["20261130T110000Z-aaaaaa"].deletes  # the policy still prunes what is older
