"""forkric.paths: the base image's sys.path, each case in a fresh interpreter."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from forkric import paths

from .conftest import run_python

SCRIPT = """
    import json, os, sys
    before = list(sys.path)
    from forkric import paths
    root = paths.set_up()
    print(json.dumps({"root": root, "path": sys.path, "before": before,
                      "pythonpath": os.environ.get("PYTHONPATH"),
                      "task_root": os.environ.get("LAMBDA_TASK_ROOT")}))
"""

OPT_SITE = f"/opt/python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def run(env: dict[str, str], cwd: str | None = None) -> dict:
    return json.loads(run_python(SCRIPT, env, cwd=cwd))


def test_opt_site_packages() -> None:
    assert paths.opt_site_packages() == OPT_SITE
    assert paths.OPT_PYTHON == "/opt/python"


def test_order_without_pythonpath(tmp_path: Path) -> None:
    out = run({"LAMBDA_TASK_ROOT": str(tmp_path), "LAMBDA_RUNTIME_DIR": "/var/runtime"})
    assert out["path"][:3] == [str(tmp_path), OPT_SITE, "/opt/python"]
    assert out["root"] == str(tmp_path)
    # the rest of the interpreter's path is kept, in order, after them
    rest = [p for p in out["path"][3:] if p in out["before"]]
    assert rest == [p for p in out["before"] if p in rest]
    assert out["pythonpath"] == "/var/runtime"


def test_order_with_pythonpath(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    out = run({"LAMBDA_TASK_ROOT": str(tmp_path), "PYTHONPATH": str(extra),
               "LAMBDA_RUNTIME_DIR": "/var/runtime"})
    assert out["path"][0] == str(tmp_path)
    assert OPT_SITE not in out["path"] and "/opt/python" not in out["path"]
    assert str(extra) in out["path"]
    assert out["pythonpath"] == str(extra)  # left as the user set it


def test_pythonpath_unset_and_no_runtime_dir(tmp_path: Path) -> None:
    out = run({"LAMBDA_TASK_ROOT": str(tmp_path)})
    assert out["pythonpath"] is None


def test_task_root_defaults_to_the_working_directory(tmp_path: Path) -> None:
    out = run({}, cwd=str(tmp_path))
    assert out["root"] == str(tmp_path) == out["task_root"]
    assert out["path"][0] == str(tmp_path)


def test_pth_files_in_the_task_root_are_honoured(tmp_path: Path) -> None:
    vendored = tmp_path / "vendored"
    vendored.mkdir()
    (vendored / "vendored_mod_xyz.py").write_text("VALUE = 'from pth'\n")
    (tmp_path / "extra.pth").write_text("vendored\nimport os; os.environ['PTH_RAN'] = '1'\n")
    code = SCRIPT + """
    import vendored_mod_xyz
    print(vendored_mod_xyz.VALUE, os.environ.get("PTH_RAN"))
    """
    out = run_python(code, {"LAMBDA_TASK_ROOT": str(tmp_path)}).splitlines()
    data = json.loads(out[0])
    assert str(vendored) in data["path"]
    assert data["path"].index(str(vendored)) > data["path"].index(str(tmp_path))
    assert out[1] == "from pth 1"


def test_task_root_is_not_duplicated(tmp_path: Path) -> None:
    out = run({"LAMBDA_TASK_ROOT": str(tmp_path)})
    assert out["path"].count(str(tmp_path)) == 1


def test_set_up_on_a_given_mapping_does_not_touch_os_environ(tmp_path: Path) -> None:
    code = """
        import json, os, sys
        from forkric import paths
        env = {"LAMBDA_RUNTIME_DIR": "/rt"}
        paths.set_up(env)
        print(json.dumps({"env": env, "os": os.environ.get("PYTHONPATH"),
                          "first": sys.path[0]}))
    """
    out = json.loads(run_python(code, {}, cwd=str(tmp_path)))
    assert out["env"] == {"LAMBDA_RUNTIME_DIR": "/rt", "LAMBDA_TASK_ROOT": str(tmp_path),
                          "PYTHONPATH": "/rt"}
    assert out["os"] is None
    assert out["first"] == str(tmp_path)
    assert os.environ.get("LAMBDA_TASK_ROOT") != str(tmp_path)
