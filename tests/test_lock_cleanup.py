"""Lock files are removed after use without ever letting two holders in (no empty
leaderboard.jsonl.lock left behind)."""

import multiprocessing as mp
import threading
import time

from hf_fusion.evaluation.leaderboard import LeaderboardEntry, append_entries, load_leaderboard
from hf_fusion.extraction.locks import FileLock


def _entry(model, i):
    return LeaderboardEntry(model=model, task="t", accuracy=0.5, std=0.0, lr=1e-3, seeds=[0], layers=[1],
                            extra={"i": i})


def test_removed_lock_file_is_not_a_second_lock(tmp_path):
    """A waiter that locked the file its holder removed must lock the file now at the path instead."""
    path = tmp_path / "x.lock"
    first = FileLock(path, remove=True)
    assert first.acquire()
    got = threading.Event()
    second = FileLock(path, remove=True)

    def wait_for_it():
        second.acquire()  # blocks on the file `first` holds, which `first` then deletes
        got.set()

    t = threading.Thread(target=wait_for_it)
    t.start()
    time.sleep(0.3)
    assert not got.is_set()
    first.release()
    assert got.wait(5)
    # the waiter holds the lock on the file at the path: a third process is kept out
    assert path.exists()
    assert not FileLock(path).acquire(blocking=False)
    second.release()
    t.join()
    assert not path.exists()
    third = FileLock(path)
    assert third.acquire(blocking=False)
    third.release()
    assert path.exists()  # remove=False (the feature cache's locks) keeps the file


def _append_many(path, model, n):
    for i in range(n):
        append_entries(path, _entry(model, i))


def test_concurrent_leaderboard_appends_keep_every_row_and_no_lock_file(tmp_path):
    path = tmp_path / "leaderboard.jsonl"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, f"m{k}", 25)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = load_leaderboard(path)
    assert sorted((r.model, r.extra["i"]) for r in rows) == sorted((f"m{k}", i) for k in range(3) for i in range(25))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.jsonl"]
