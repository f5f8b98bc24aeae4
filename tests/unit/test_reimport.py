"""The repairs around an import in a process that imported before (forkric.reimport) and the
listener queue a worker owns after the fork (forkric.postfork.own_queue)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import threading
import time

from forkric import postfork, reimport


def test_a_queue_whose_lock_a_gone_thread_held_at_the_fork_takes_records_in_the_child() -> None:
    shared: queue.Queue[str] = queue.Queue()
    shared.put("the parent's record")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # as the supervisor's listener thread, inside get(), at the fork
        with shared.mutex:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        postfork.own_queue(shared)
        fresh = shared.empty()
        shared.put_nowait("the child's record")  # was: blocked for ever on the held lock
        os._exit(0 if fresh and shared.get_nowait() == "the child's record" else 3)
    release.set()
    thread.join()
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0, done


def test_the_logging_configuration_goes_back_and_only_the_previous_imports_threads_end() -> None:
    root = logging.getLogger()
    before = reimport.capture_logging()
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    added = logging.handlers.QueueHandler(records)
    root.addHandler(added)
    logging.getLogger("made.by.the.import").setLevel(logging.ERROR)
    listener = logging.handlers.QueueListener(records, logging.NullHandler())
    listener.start()
    kept_queue: queue.Queue[logging.LogRecord] = queue.Queue()
    kept = logging.handlers.QueueListener(kept_queue, logging.NullHandler())
    kept.start()
    kept_handler = logging.handlers.QueueHandler(kept_queue)
    try:
        reimport.restore_logging(before)
        assert added not in root.handlers
        assert logging.getLogger("made.by.the.import").level == logging.NOTSET
        root.addHandler(kept_handler)  # the new import's: its listener is still fed
        reimport.end_previous_threads([listener, kept], [])
        assert listener._thread is None  # type: ignore[attr-defined]
        assert kept._thread is not None and kept._thread.is_alive()  # type: ignore[attr-defined]
    finally:
        root.removeHandler(kept_handler)
        kept.stop()
        if listener._thread is not None:  # type: ignore[attr-defined]
            listener.stop()
