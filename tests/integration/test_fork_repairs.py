"""The automatic repairs, the start-up report, the post_fork hook and the per-worker import,
each on the object a handler's import would leave, in real forked children (see
tests/support/forking.py). The corpus under the real RIE is tests/interop/test_fork_corpus.py."""

from __future__ import annotations

from pathlib import Path

from tests.support.forking import run


def test_nothing_left_means_no_report_and_a_shared_import() -> None:
    result = run('''
        import logging
        lines = []
        logging.getLogger("forkric").addHandler(type("H", (logging.Handler,), {
            "emit": lambda self, r: lines.append(r.getMessage())})())
        with prefork.importing():
            data = list(range(1000))
        inherited = prefork.prepare("app.handler")
        emit({"mode": inherited.mode, "lines": lines})
    ''')
    assert result == {"mode": "once", "lines": []}


def test_a_user_thread_is_named_and_auto_imports_per_worker() -> None:
    result = run('''
        import logging, threading, time
        lines = []
        logging.getLogger("forkric").addHandler(type("H", (logging.Handler,), {
            "emit": lambda self, r: lines.append(r.getMessage())})())
        def poll():
            time.sleep(60)
        with prefork.importing():
            threading.Thread(target=poll, name="poller", daemon=True).start()
        auto = prefork.prepare("app.handler")
        once = prefork.prepare("app.handler", "once")
        emit({"auto": auto.mode, "once": once.mode, "lines": lines})
    ''')
    assert result["auto"] == "per-worker"
    assert result["once"] == "once"
    assert any("thread 'poller' (target __main__.poll)" in line and "@post_fork" in line
               for line in result["lines"]), result["lines"]
    assert any("import mode auto: each worker imports the handler itself" in line
               for line in result["lines"])


def test_connections_are_shut_down_without_a_byte_and_pools_are_not_reported() -> None:
    """shutdown(2), not close(): the peer reads EOF, never a goodbye written by a worker; the
    child's socket reads EOF too, so a pooled client reconnects. A urllib3 connection (requests,
    boto3) reconnects by itself and is not reported; a raw socket and a bare http.client
    connection are (its next request raised BrokenPipeError in every worker)."""
    result = run('''
        import http.client, socket, threading, logging
        import urllib3
        lines = []
        logging.getLogger("forkric").addHandler(type("H", (logging.Handler,), {
            "emit": lambda self, r: lines.append(r.getMessage())})())
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        server_pid = os.fork()
        if server_pid == 0:  # the peer lives in its own process, as a real server would
            peers = [server.accept()[0] for _ in range(3)]
            got = b"".join(peer.recv(100) for peer in peers)
            os._exit(0 if got == b"" else 1)
        server.close()
        with prefork.importing():
            raw = socket.create_connection(("127.0.0.1", port))
            pooled = urllib3.connection.HTTPConnection("127.0.0.1", port)
            pooled.connect()
            plain = http.client.HTTPConnection("127.0.0.1", port)
            plain.connect()
        inherited = prefork.prepare("app.handler", "once")
        child = forked(lambda: raw.recv(10).decode(), inherited)
        _, status = os.waitpid(server_pid, 0)
        emit({"shut": inherited.shut_down, "lines": lines, "child": child,
              "peer_saw_no_bytes": os.waitstatus_to_exitcode(status) == 0})
    ''')
    assert len(result["shut"]) == 3, result
    reported = [line for line in result["lines"] if "TCP connection to 127.0.0.1:" in line]
    assert len(reported) == 2, result["lines"]
    assert all("shut down before the fork" in line for line in reported)
    assert result["child"] == [{"ok": ""}]  # EOF, not a hang, not another worker's bytes
    assert result["peer_saw_no_bytes"]


def test_a_thread_pool_used_at_import_gets_threads_of_its_own() -> None:
    result = run('''
        from concurrent.futures import ThreadPoolExecutor
        with prefork.importing():
            pool = ThreadPoolExecutor(4)
            list(pool.map(abs, range(-8, 0)))
        inherited = prefork.prepare("app.handler")
        emit({"mode": inherited.mode, "child": forked(
            lambda: sum(pool.map(abs, range(-8, 0), timeout=10)), inherited, repeat=2)})
    ''')
    assert result == {"mode": "once", "child": [{"ok": 36}, {"ok": 36}]}


def test_a_log_queue_listener_runs_again_in_each_worker(tmp_path: Path) -> None:
    result = run(f'''
        import logging, logging.handlers, queue, time
        with prefork.importing():
            records = queue.Queue()
            target = logging.FileHandler({str(tmp_path / "log")!r})
            listener = logging.handlers.QueueListener(records, target)
            listener.start()
            logger = logging.getLogger("app")
            logger.propagate = False
            logger.addHandler(logging.handlers.QueueHandler(records))
        inherited = prefork.prepare("app.handler")

        def check():
            logger.warning("from %d", os.getpid())
            listener.stop()  # drains the queue
            return open({str(tmp_path / "log")!r}).read().count("from")
        emit({{"mode": inherited.mode, "child": forked(check, inherited, repeat=2)}})
    ''')
    assert result == {"mode": "once", "child": [{"ok": 1}, {"ok": 2}]}


def test_generators_seeded_by_the_os_differ_per_worker_and_seeded_ones_do_not() -> None:
    result = run('''
        import random
        import numpy as np
        with prefork.importing():
            free, seeded = random.Random(), random.Random(42)
            gen, gen42 = np.random.default_rng(), np.random.default_rng(42)
            legacy = np.random.RandomState()
        inherited = prefork.prepare("app.handler")
        np.random.seed(None)
        check = lambda: [free.random(), seeded.random(), float(gen.random()),
                         float(gen42.random()), float(np.random.random()),
                         float(legacy.random())]
        emit(forked(check, inherited, repeat=3))
    ''')
    columns = list(zip(*(child["ok"] for child in result), strict=True))
    free, seeded, gen, gen42, numpy_global, legacy = columns
    assert len(set(free)) == 3 and len(set(gen)) == 3
    assert len(set(numpy_global)) == 3 and len(set(legacy)) == 3
    assert len(set(seeded)) == 1 and len(set(gen42)) == 1  # the user's seed is kept


def test_an_anonymous_temp_file_is_each_workers_own() -> None:
    result = run('''
        import tempfile
        harness_log = tempfile.TemporaryFile()  # the process had it before: not the import's
        with prefork.importing():
            scratch = tempfile.TemporaryFile()
            scratch.write(b"init:")
        inherited = prefork.prepare("app.handler")

        def check():
            harness_log.write(b"w")
            harness_log.flush()
            scratch.write(str(os.getpid()).encode())
            scratch.flush()
            scratch.seek(0)
            return scratch.read().decode()
        children = forked(check, inherited, repeat=2)
        scratch.seek(0)
        harness_log.seek(0)
        emit({"children": children, "parent": scratch.read().decode(),
              "harness": harness_log.read().decode()})
    ''')
    assert result["parent"] == "init:"
    assert result["harness"] == "ww"  # both workers wrote to the same, shared file
    for child in result["children"]:
        assert child["ok"].startswith("init:") and child["ok"][5:].isdigit(), result


def test_a_named_file_the_import_opened_for_writing_is_named_and_auto_imports_per_worker(
        tmp_path: Path) -> None:
    """Workers share its one offset (a NamedTemporaryFile used as scratch space read back
    another worker's bytes on 63 of 120 invocations under forkric local; a sqlite3 connection
    is the same fd kind, and SQLite's locks are not inherited by a fork). A file opened for
    appending (a log) or for reading is not named."""
    result = run(f'''
        import logging, sqlite3, tempfile
        lines = []
        logging.getLogger("forkric").addHandler(type("H", (logging.Handler,), {{
            "emit": lambda self, r: lines.append(r.getMessage())}})())
        with prefork.importing():
            scratch = tempfile.NamedTemporaryFile(dir={str(tmp_path)!r})
            db = sqlite3.connect({str(tmp_path / "app.db")!r})
            db.execute("create table t (x int)")
            log_file = open({str(tmp_path / "log")!r}, "a")
            model = open(__file__ if "__file__" in globals() else "/etc/hostname")
        auto = prefork.prepare("app.handler")
        emit({{"mode": auto.mode, "lines": lines}})
    ''')
    assert result["mode"] == "per-worker"
    named = [line for line in result["lines"] if line.startswith("forkric: fork safety: file ")]
    assert len(named) == 2, result["lines"]
    assert any("app.db" in line for line in named)
    assert not any("/log " in line or "hostname" in line for line in named)
    assert all("shared offset" in line and "@post_fork" in line for line in named)


def test_openmp_is_held_to_one_thread_during_the_import_only_where_the_user_set_nothing(
        ) -> None:
    result = run('''
        import subprocess
        def seen():
            return subprocess.run(["sh", "-c", "echo ${OMP_NUM_THREADS:-unset}"],
                                  capture_output=True, text=True).stdout.strip()
        with prefork.importing():
            during = seen(), os.environ.get("OMP_NUM_THREADS")
        after = seen()
        os.environ["OMP_NUM_THREADS"] = "3"
        with prefork.importing():
            user = seen()
        emit([during, after, user])
    ''')
    assert result == [["1", None], "unset", "3"]


def test_sklearn_openmp_fitted_at_import_does_not_hang_workers() -> None:
    result = run('''
        import numpy as np
        with prefork.importing():
            from sklearn.cluster import KMeans
            data = np.random.default_rng(1).normal(size=(2000, 4))
            model = KMeans(n_clusters=4, n_init=2, random_state=0).fit(data)
        inherited = prefork.prepare("app.handler")
        def check():
            from threadpoolctl import threadpool_info
            omp = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
            KMeans(n_clusters=4, n_init=2, random_state=0).fit(data)
            return omp
        emit({"openmp": bool(inherited.openmp), "child": forked(check, inherited, repeat=2)})
    ''', timeout=120)
    assert result["openmp"]
    cpus = __import__("os").cpu_count()
    assert all(child.get("ok") and set(child["ok"]) == {cpus} for child in result["child"]), result


def test_post_fork_hooks_run_in_each_worker_decorator_and_setting(tmp_path: Path) -> None:
    (tmp_path / "hookmod.py").write_text(
        "import os\nSEEN = []\ndef reconnect():\n    SEEN.append(('setting', os.getpid()))\n")
    result = run('''
        import forkric, hookmod
        with prefork.importing():
            @forkric.post_fork
            def fresh_client():
                hookmod.SEEN.append(("decorator", os.getpid()))
        inherited = prefork.prepare("app.handler", post_fork_setting="hookmod:reconnect")
        emit({"parent": hookmod.SEEN, "child": forked(
            lambda: [kind for kind, pid in hookmod.SEEN if pid == os.getpid()], inherited)})
    ''', cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)} | _env())
    assert result == {"parent": [], "child": [{"ok": ["decorator", "setting"]}]}


def test_a_bad_post_fork_setting_is_an_init_error() -> None:
    result = run('''
        from forkric import errors
        out = []
        for spec in ("nocolon", "no_such_module_xyz:f", "os:no_such_function"):
            try:
                prefork.prepare("app.handler", post_fork_setting=spec)
            except errors.LambdaError as exc:
                out.append([exc.error_type, exc.message])
        emit(out)
    ''')
    assert result == [
        ["Runtime.MalformedHandlerName", "Bad post_fork hook 'nocolon': expected module:function"],
        ["Runtime.ImportModuleError",
         "Unable to import module 'no_such_module_xyz': No module named 'no_such_module_xyz'"],
        ["Runtime.HandlerNotFound", "Handler 'no_such_function' missing on module 'os'"],
    ]


def test_per_worker_mode_imports_the_handler_again_in_each_worker(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import os, threading\nIMPORTED_IN = os.getpid()\nLOCK = threading.Lock()\n"
        "def handler(event, context):\n    return IMPORTED_IN\n")
    result = run('''
        from forkric import handler as handlers
        with prefork.importing():
            function = handlers.load("app.handler")
        inherited = prefork.prepare("app.handler", "per-worker", task_root=os.getcwd())
        emit({"parent": os.getpid(), "child": forked(
            lambda: [sys.modules["app"].handler(None, None), os.getpid()], inherited, function)})
    ''', cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)} | _env())
    imported_in, pid = result["child"][0]["ok"]
    assert imported_in == pid != result["parent"]


def test_a_module_half_imported_by_another_thread_is_waited_for() -> None:
    result = run('''
        import threading, time, types, importlib.machinery
        from forkric import prefork as pf
        pf.IMPORT_SETTLE_S = 0.3
        module = types.ModuleType("slowmod")
        module.__spec__ = importlib.machinery.ModuleSpec("slowmod", None)
        module.__spec__._initializing = True
        sys.modules["slowmod"] = module
        settled = types.ModuleType("quickmod")
        settled.__spec__ = importlib.machinery.ModuleSpec("quickmod", None)
        settled.__spec__._initializing = True
        sys.modules["quickmod"] = settled
        threading.Timer(0.05, lambda: setattr(settled.__spec__, "_initializing", False)).start()
        inherited = prefork.prepare("app.handler")
        emit([f.what for f in inherited.findings if f.kind == "module"])
    ''')
    assert result == ["module 'slowmod' still being imported by another thread"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_sockets_open_before_the_import_are_not_the_imports() -> None:
    """forkric local hands its runtime log sockets; a parent may hand down others: only what the
    import opened is shut down, reported, or makes `auto` import per worker."""
    result = run('''
        import socket
        inherited_pair = socket.socketpair()
        server = socket.create_server(("127.0.0.1", 0))
        before = socket.create_connection(server.getsockname())
        with prefork.importing():
            during = socket.create_connection(server.getsockname())
        inherited = prefork.prepare("app.handler")
        before.sendall(b"x")  # still open for writing: it was not shut down
        emit({"mode": inherited.mode, "shut": inherited.shut_down,
              "findings": [f.what for f in inherited.findings], "during": during.fileno()})
    ''')
    assert result["mode"] == "per-worker"  # the import's own raw connection
    assert [what.endswith(f"(fd {result['during']})") for what in result["shut"]] == [True]
    assert len(result["findings"]) == 1 and f"(fd {result['during']})" in result["findings"][0]


def test_a_restarted_log_listener_writes_what_it_holds_before_the_worker_exits(
        tmp_path: Path) -> None:
    """A worker leaves far more often than an imported-once process (each reload, recycle,
    retire): the records still in its restarted listener's queue were lost with it (a listener's
    thread is a daemon). A CI run lost records logged just before a SIGHUP swapped the workers.
    Here the listener's handler is slow, and the worker ends (its atexit hooks) right after
    logging."""
    result = run(f'''
        import atexit, logging, logging.handlers, queue, time
        class Slow(logging.FileHandler):
            def emit(self, record):
                time.sleep(0.3)
                super().emit(record)
        with prefork.importing():
            records = queue.Queue()
            listener = logging.handlers.QueueListener(records, Slow({str(tmp_path / "log")!r}))
            listener.start()
            logger = logging.getLogger("app")
            logger.propagate = False
            logger.addHandler(logging.handlers.QueueHandler(records))
        inherited = prefork.prepare("app.handler")

        def log_then_exit():
            logger.warning("from %d", os.getpid())
            atexit._run_exitfuncs()  # the worker's way out (worker._finish)
            return open({str(tmp_path / "log")!r}).read().count("from")
        emit({{"mode": inherited.mode, "child": forked(log_then_exit, inherited, repeat=2)}})
    ''')
    assert result == {"mode": "once", "child": [{"ok": 1}, {"ok": 2}]}


def test_a_fork_while_a_log_listener_writes_leaves_the_worker_able_to_log(tmp_path: Path) -> None:
    """The supervisor's own lines go through the handler's root QueueHandler, so its listener
    thread may be inside a handler (holding that handler's stream lock) at the fork: no thread
    of the child releases it, and the worker's listener hung on its first write (and the worker
    on its exit's flush). The supervisor now drains its listeners around each fork."""
    result = run(f'''
        import logging, logging.handlers, queue, threading, time
        inside = threading.Event()
        class Slow(logging.Handler):
            lock_held = threading.Lock()  # as a stream's buffer lock is
            def emit(self, record):
                with Slow.lock_held:
                    inside.set()
                    time.sleep(0.3)
                    open({str(tmp_path / "log")!r}, "a").write(record.getMessage() + "\\n")
        with prefork.importing():
            records = queue.Queue()
            listener = logging.handlers.QueueListener(records, Slow())
            listener.start()
            logger = logging.getLogger("app")
            logger.propagate = False
            logger.addHandler(logging.handlers.QueueHandler(records))
        inherited = prefork.prepare("app.handler")
        logger.warning("the supervisor's line")
        inside.wait(5)  # the listener is inside the handler, holding its lock
        read, write = os.pipe()
        with postfork.listeners_paused(inherited):
            pid = os.fork()
        if pid == 0:
            postfork.start_worker(inherited, None)
            logger.warning("from the worker")
            done = threading.Event()
            threading.Thread(target=lambda: (listener.stop(), done.set()), daemon=True).start()
            os.write(write, b"1" if done.wait(5) else b"0")
            os._exit(0)
        answer = os.read(read, 1)
        os.waitpid(pid, 0)
        emit({{"worker_logged": answer == b"1",
               "lines": open({str(tmp_path / "log")!r}).read().splitlines()}})
    ''')
    assert result["worker_logged"], result
    assert "from the worker" in result["lines"], result
