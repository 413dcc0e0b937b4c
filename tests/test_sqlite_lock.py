"""The lock SQLite studies take (flock on a file beside the database): exclusive, and no file left."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from search_helpers import sqlite_url

from ecgsearch.storage.db_lock import DatabaseLock


def test_the_lock_excludes_waiters_and_leaves_no_lock_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    inside, most_inside, errors = [0], [0], []
    guard = threading.Lock()

    def hold(times: int) -> None:
        try:
            for _ in range(times):
                lock = DatabaseLock(url, "ask:s")
                lock.acquire()
                with guard:
                    inside[0] += 1
                    most_inside[0] = max(most_inside[0], inside[0])
                time.sleep(0.002)  # a waiter opens the file now, and finds it removed once it gets the lock
                with guard:
                    inside[0] -= 1
                lock.release()
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hold, args=(40,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and most_inside[0] == 1
    assert [p.name for p in tmp_path.iterdir()] == []


def test_locks_of_other_names_do_not_wait_for_each_other(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    first, second = DatabaseLock(url, "ask:a"), DatabaseLock(url, "ask:b")
    first.acquire()
    done = threading.Event()
    threading.Thread(target=lambda: (second.acquire(), done.set()), daemon=True).start()
    assert done.wait(5)
    second.release()
    first.release()
    assert not first.held and not second.held and list(tmp_path.iterdir()) == []
