"""``twistd gameserver``'s service: what it does to the process it runs in."""

from __future__ import annotations

import gc

from gameserver._tap import GC_THRESHOLD, CollectorPolicy, Options, makeService


def test_the_service_sets_the_collector_policy():
    options = Options()
    options.parseOptions(["--listen", "tcp:0", "--secret", "s" * 40])
    service = makeService(options)
    assert [s for s in service if isinstance(s, CollectorPolicy)]


def test_starting_freezes_what_start_up_made_and_collects_young_objects_less_often():
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        CollectorPolicy().startService()
        assert gc.get_threshold() == (GC_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
