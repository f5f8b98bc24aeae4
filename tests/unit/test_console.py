"""forkric.local.console: the first error record of each type in full, then counts; init errors
in one line, once."""

from __future__ import annotations

import json

from forkric.local.console import Console, error_type


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def console() -> tuple[Console, list[str], Clock]:
    written: list[str] = []
    clock = Clock()
    return Console(written.append, window_s=5.0, clock=clock), written, clock


TEXT_RECORD = "[ERROR] KeyError: 'k'\nTraceback (most recent call last):\n  File \"app.py\""
JSON_RECORD = json.dumps({"timestamp": "t", "level": "ERROR", "errorMessage": "boom",
                          "errorType": "ValueError", "requestId": "r", "stackTrace": []})


def test_error_types_of_records_and_other_lines() -> None:
    assert error_type(TEXT_RECORD) == "KeyError"
    assert error_type("[ERROR] Runtime.MarshalError: Unable to marshal") == "Runtime.MarshalError"
    assert error_type(JSON_RECORD) == "ValueError"
    # A logging record (a tab after the level), a print, the service's own lines: not records.
    assert error_type("[ERROR]\t2026-11-30T00:00:00.000Z\trid\tsomething failed") is None
    assert error_type("hello") is None
    assert error_type('{"level": "INFO", "message": "x"}') is None


def test_the_first_of_each_type_in_full_then_a_count_per_window() -> None:
    out, written, clock = console()
    out.line(TEXT_RECORD)
    out.line(JSON_RECORD)
    for _ in range(1000):
        out.line(TEXT_RECORD)
        out.line("a print between")
    out.line(JSON_RECORD)
    assert written.count(TEXT_RECORD) == 1
    assert written.count(JSON_RECORD) == 1
    assert written.count("a print between") == 1000  # only error records are held back
    clock.now = 5.0
    out.line(TEXT_RECORD)  # the window is over: the counts come out
    summary = [line for line in written if line.startswith("forkric local: ")]
    assert summary == [
        "forkric local: 1001 more KeyError in the last 5 s (shown once in full; each "
        "invocation's Tail log has its own)",
        "forkric local: 1 more ValueError in the last 5 s (shown once in full; each "
        "invocation's Tail log has its own)"]
    count = len(written)
    out.stop()  # nothing held since: nothing more to say
    assert len(written) == count


def test_after_a_reload_errors_show_in_full_again() -> None:
    out, written, _ = console()
    out.line(TEXT_RECORD)
    out.line(TEXT_RECORD)
    out.forget()
    out.line(TEXT_RECORD)
    assert written.count(TEXT_RECORD) == 2
    assert "forkric local: 1 more KeyError" in written[1]


def test_an_init_error_is_one_line_once() -> None:
    out, written, _ = console()
    body = json.dumps({"errorMessage": "Unable to import module 'x': No module named 'x'",
                       "errorType": "Runtime.ImportModuleError", "requestId": "",
                       "stackTrace": []}).encode()
    for _ in range(5):
        out.init_error(body)
    assert written == ["forkric local: init error: Runtime.ImportModuleError: Unable to import "
                       "module 'x': No module named 'x'"]
    out.stop()
    assert written[1] == "forkric local: the same init error 4 more time(s) in the last 5 s"


def test_an_init_error_with_a_trace_shows_the_users_frames_only() -> None:
    out, written, _ = console()
    trace = ['  File "/usr/lib/python3.11/importlib/__init__.py", line 126, in import_module\n'
             '    return _bootstrap._gcd_import(name[level:], package, level)\n',
             '  File "<frozen importlib._bootstrap>", line 1204, in _gcd_import\n',
             '  File "/task/app.py", line 3, in <module>\n    raise ValueError("bad")\n']
    out.init_error(json.dumps({"errorType": "ValueError", "errorMessage": "bad",
                               "stackTrace": trace}).encode())
    assert written == ["forkric local: init error: ValueError: bad",
                       'Traceback (most recent call last):\n  File "/task/app.py", line 3, in '
                       '<module>\n    raise ValueError("bad")']


def test_a_changed_init_error_is_shown() -> None:
    out, written, _ = console()
    out.init_error(b'{"errorType": "A", "errorMessage": "one"}')
    out.init_error(b'{"errorType": "B", "errorMessage": "two"}')
    out.init_error(b"not json")
    assert written == ["forkric local: init error: A: one", "forkric local: init error: B: two",
                       "forkric local: init error: Runtime.Unknown"]


def test_a_window_starts_with_the_first_record_held_back() -> None:
    out, written, clock = console()
    out.line(TEXT_RECORD)
    clock.now = 100.0  # a long quiet time, then the errors come back
    out.line(TEXT_RECORD)
    clock.now = 104.0
    out.line(TEXT_RECORD)
    assert len(written) == 1  # not yet: the window began at 100
    clock.now = 105.0
    out.line(TEXT_RECORD)
    assert written[1].startswith("forkric local: 3 more KeyError in the last 5 s")


def test_the_timer_summarises_only_a_window_that_has_run_its_length() -> None:
    # Found by trying: under a failing load the timer cut windows short, so the console said
    # "1 more KeyError in the last 5 s" a moment after "1222 more KeyError in the last 5 s".
    out, written, clock = console()
    out.line(TEXT_RECORD)
    for step in range(1, 51):  # 10 records a second for 5 s: the last one ends the window
        clock.now = step / 10
        out.line(TEXT_RECORD)
    assert written[-1].startswith("forkric local: 50 more KeyError in the last 5 s")
    clock.now = 5.1
    out.line(TEXT_RECORD)  # held: its window began at 5.0
    assert abs(out.tick() - 4.9) < 1e-9  # not yet: 4.9 s to go
    assert len(written) == 2
    clock.now = 10.0
    assert out.tick() == 5.0  # the window is over: its count, then a whole window to wait
    assert written[-1].startswith("forkric local: 1 more KeyError in the last 5 s")
    assert len(written) == 3
