"""forkric.config: flags over the environment over the defaults, and clear errors."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from forkric import config


def load(given: dict[str, Any] | None = None, environ: dict[str, str] | None = None,
         handler: str | None = "app.handler") -> config.Config:
    return config.load(handler, given or {}, environ or {})


def test_defaults() -> None:
    cfg = load()
    assert cfg == config.Config(handler="app.handler")
    assert (cfg.workers, cfg.max_worker_memory_mb, cfg.max_requests, cfg.max_requests_jitter,
            cfg.stuck_grace_s, cfg.shutdown_grace_s, cfg.trace_leaks, cfg.status_file) == (
        1, 0.0, 0, 0, 1.0, 10.0, False, "")


def test_handler_and_runtime_api_from_environment() -> None:
    env = {"_HANDLER": "env.handler", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
    cfg = load(environ=env, handler=None)
    assert (cfg.handler, cfg.runtime_api) == ("env.handler", "127.0.0.1:9001")
    assert load(environ=env, handler="arg.handler").handler == "arg.handler"
    assert cfg.environ is env


ENV_VALUES = {
    "FORKRIC_WORKERS": ("workers", "4", 4),
    "FORKRIC_MAX_WORKER_MEMORY_MB": ("max_worker_memory_mb", "256.5", 256.5),
    "FORKRIC_MAX_REQUESTS": ("max_requests", "1000", 1000),
    "FORKRIC_MAX_REQUESTS_JITTER": ("max_requests_jitter", "50", 50),
    "FORKRIC_STUCK_GRACE_S": ("stuck_grace_s", "2.5", 2.5),
    "FORKRIC_SHUTDOWN_GRACE_S": ("shutdown_grace_s", "0", 0.0),
    "FORKRIC_TRACE_LEAKS": ("trace_leaks", "true", True),
    "FORKRIC_STATUS_FILE": ("status_file", "/tmp/board", "/tmp/board"),
    "AWS_LAMBDA_FUNCTION_TIMEOUT": ("timeout_s", "7", 7.0),
    "FORKRIC_HOST": ("host", "0.0.0.0", "0.0.0.0"),
    "FORKRIC_PORT": ("port", "9100", 9100),
    "FORKRIC_MAX_QUEUE": ("max_queue", "5", 5),
    "FORKRIC_SOAK_DURATION": ("duration_s", "12.5", 12.5),
    "FORKRIC_SOAK_USERS": ("users", "3", 3),
    "FORKRIC_SOAK_EVENT": ("event", '{"a": 1}', '{"a": 1}'),
    "FORKRIC_SOAK_OUT": ("out", "/tmp/out", "/tmp/out"),
    "FORKRIC_SOAK_SAFETY_LIMIT_MB": ("safety_limit_mb", "512", 512.0),
    "FORKRIC_RELOAD": ("reload", "1", True),
    "FORKRIC_FUNCTION": ("function_name", "other", "other"),
    "FORKRIC_PAYLOAD": ("payload", "@-", "@-"),
    "FORKRIC_LOG_TYPE": ("log_type", "Tail", "Tail"),
    "FORKRIC_INVOCATION_TYPE": ("invocation_type", "Event", "Event"),
    "FORKRIC_WAIT_READY_S": ("wait_ready_s", "5", 5.0),
    "FORKRIC_LOAD_HEADLESS": ("headless", "yes", True),
}


@pytest.mark.parametrize("env_name", sorted(ENV_VALUES))
def test_every_setting_from_its_environment_variable(env_name: str) -> None:
    name, text, value = ENV_VALUES[env_name]
    assert getattr(load(environ={env_name: text}), name) == value


@pytest.mark.parametrize("env_name", sorted(ENV_VALUES))
def test_flag_beats_environment(env_name: str) -> None:
    name, _, _ = ENV_VALUES[env_name]
    flag_text = {"workers": "7", "max_worker_memory_mb": "9", "max_requests": "3",
                 "max_requests_jitter": "2", "stuck_grace_s": "0.5", "shutdown_grace_s": "4",
                 "trace_leaks": "0", "status_file": "/flag", "timeout_s": "2", "host": "::1",
                 "port": "9200", "max_queue": "9", "duration_s": "3", "users": "5",
                 "event": "[]", "out": "o", "safety_limit_mb": "2048", "reload": "0",
                 "function_name": "fn:live",
                 "payload": "{}", "log_type": "None", "invocation_type": "DryRun",
                 "wait_ready_s": "0", "headless": "0"}[name]
    env_text = ENV_VALUES[env_name][1]
    setting = next(s for s in config.SETTINGS if s.name == name)
    assert getattr(load({name: flag_text}, {env_name: env_text}), name) == setting.parse(flag_text)
    assert setting.parse(flag_text) != setting.parse(env_text)


def test_every_setting_has_a_flag_and_an_env_var_and_a_config_field() -> None:
    fields = set(config.Config.__dataclass_fields__)
    for setting in config.SETTINGS:
        assert setting.flag.startswith("--")
        assert setting.env and all(name.isupper() for name in setting.env)
        assert setting.name in fields
        assert setting.help


def test_max_concurrency_is_the_fallback_for_workers() -> None:
    assert load(environ={"AWS_LAMBDA_MAX_CONCURRENCY": "8"}).workers == 8
    assert load(environ={"AWS_LAMBDA_MAX_CONCURRENCY": "8", "FORKRIC_WORKERS": "3"}).workers == 3
    assert load({"workers": "2"}, {"AWS_LAMBDA_MAX_CONCURRENCY": "8",
                                   "FORKRIC_WORKERS": "3"}).workers == 2
    # An empty variable counts as unset.
    assert load(environ={"FORKRIC_WORKERS": "", "AWS_LAMBDA_MAX_CONCURRENCY": "5"}).workers == 5


@pytest.mark.parametrize(("given", "environ", "source"), [
    ({"workers": "0"}, {}, "--workers"),
    ({"workers": "two"}, {}, "--workers"),
    ({}, {"FORKRIC_WORKERS": "-1"}, "FORKRIC_WORKERS"),
    ({}, {"AWS_LAMBDA_MAX_CONCURRENCY": "x"}, "AWS_LAMBDA_MAX_CONCURRENCY"),
    ({}, {"FORKRIC_MAX_WORKER_MEMORY_MB": "-5"}, "FORKRIC_MAX_WORKER_MEMORY_MB"),
    ({}, {"FORKRIC_MAX_WORKER_MEMORY_MB": "lots"}, "FORKRIC_MAX_WORKER_MEMORY_MB"),
    ({"max_requests": "1.5"}, {}, "--max-requests"),
    ({}, {"FORKRIC_MAX_REQUESTS_JITTER": "-2"}, "FORKRIC_MAX_REQUESTS_JITTER"),
    ({"stuck_grace_s": "-0.1"}, {}, "--stuck-grace"),
    ({}, {"FORKRIC_SHUTDOWN_GRACE_S": "soon"}, "FORKRIC_SHUTDOWN_GRACE_S"),
    ({"safety_limit_mb": "lots"}, {}, "--safety-limit"),
    ({}, {"FORKRIC_SOAK_SAFETY_LIMIT_MB": "0"}, "FORKRIC_SOAK_SAFETY_LIMIT_MB"),
])
def test_bad_values_are_a_usage_error_in_the_users_terms(
        given: dict[str, Any], environ: dict[str, str], source: str) -> None:
    with pytest.raises(config.UsageError) as info:
        load(given, environ)
    message = str(info.value)
    assert message.startswith(f"bad value for {source}: ")
    assert "literal" not in message and "could not convert" not in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("flag", "text", "expected"), [
    ("workers", "two", "'two' is not a whole number"),
    ("workers", "0", "'0' is not 1 or more"),
    ("timeout_s", "soon", "'soon' is not a number"),
    ("port", "70000", "'70000' is not a port number (0 to 65535)"),
    ("function_name", "bad name!", "'bad name!' is not a Lambda function name"),
    ("log_type", "tail", "'tail' is not one of None, Tail"),
    # Meant as 2 GB: every worker would be recycled on its first invocations.
    ("safety_limit_mb", "2", "'2' is under 64 (MB: a limit that low recycles workers on their "
                             "first invocations; --max-worker-memory sets any limit)"),
])
def test_messages_say_what_is_wanted(flag: str, text: str, expected: str) -> None:
    command = {"function_name": "invoke", "log_type": "invoke", "safety_limit_mb": "soak"}
    with pytest.raises(config.UsageError) as info:
        config.load("h.f", {flag: text}, {}, command.get(flag, "local"))
    assert expected in str(info.value)


FLOAT_SETTINGS = sorted(s.name for s in config.SETTINGS
                        if s.parse in (config._non_negative_float, config._positive_float,
                                       config._safety_limit))


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "Infinity"])
def test_a_number_that_is_not_finite_is_a_usage_error(name: str, text: str) -> None:
    # Found by trying: --timeout inf was a traceback, --max-worker-memory nan crashed the
    # supervisor, --wait-ready nan waited for ever.
    setting = next(s for s in config.SETTINGS if s.name == name)
    command = sorted(setting.commands)[0]
    with pytest.raises(config.UsageError) as info:
        config.load("h.f", {name: text}, {}, command)
    assert str(info.value) == f"bad value for {setting.flag}: {text!r} is not a finite number"


def test_every_flags_help_gives_its_default_and_environment_variable() -> None:
    for command in ("run", "local", "soak", "invoke", "load"):
        parser = argparse.ArgumentParser()
        config.add_arguments(parser, command)
        for action in parser._actions[1:]:
            setting = next(s for s in config.SETTINGS if s.name == action.dest)
            assert "default: " in (action.help or ""), setting.flag
            assert f"env ${setting.env[0]}" in (action.help or ""), setting.flag


def test_zero_meaning_off_is_said() -> None:
    for name in ("max_worker_memory_mb", "max_requests", "wait_ready_s", "max_queue",
                 "stuck_grace_s", "shutdown_grace_s"):
        setting = next(s for s in config.SETTINGS if s.name == name)
        for command in setting.commands - {"soak"}:  # soak's port and wait have other defaults
            text = config.help_text(setting, command)
            assert "(0: " in text or "; 0: " in text or "default: 0: " in text, (name, command)


def test_each_commands_help_gives_its_own_default_only() -> None:
    # Found by trying: `forkric invoke --help` offered "0: any free port" and soak's defaults.
    def help_of(command: str, name: str) -> str:
        parser = argparse.ArgumentParser()
        config.add_arguments(parser, command)
        return next(a.help or "" for a in parser._actions if a.dest == name)

    assert "(default: 9000; env $FORKRIC_PORT)" in help_of("invoke", "port")
    assert "default: 9000; 0: any free port;" in help_of("local", "port")
    assert "(default: 0: do not wait; env" in help_of("invoke", "wait_ready_s")
    assert "(default: 3, as on Lambda; env" in help_of("local", "timeout_s")
    assert "(default: the CPU count; env" in help_of("local", "workers")
    for command in ("run", "local", "invoke", "load"):
        parser = argparse.ArgumentParser()
        config.add_arguments(parser, command)
        assert "soak" not in " ".join(a.help or "" for a in parser._actions[1:]), command


def test_load_takes_several_events() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, "load")
    args = parser.parse_args(["--event", "@a.json:3", "--event", "@b.json:1"])
    assert config.load(None, {"event": args.event}, {}, "load").event == "@a.json:3,@b.json:1"


@pytest.mark.parametrize(("text", "value"), [("1", True), ("TRUE", True), (" yes ", True),
                                             ("on", True), ("0", False), ("no", False),
                                             ("Off", False), ("false", False)])
def test_flag_values(text: str, value: bool) -> None:
    assert load(environ={"FORKRIC_TRACE_LEAKS": text}).trace_leaks is value


@pytest.mark.parametrize("text", ["anything", "ture", "2", "enabled"])
def test_a_flag_variable_that_is_neither_on_nor_off_is_a_usage_error(text: str) -> None:
    # FORKRIC_RELOAD=ture was silently off: the user's reload never came, and nothing said why.
    with pytest.raises(config.UsageError) as info:
        config.load("h.f", {}, {"FORKRIC_RELOAD": text}, "local")
    assert str(info.value) == (f"bad value for FORKRIC_RELOAD: {text!r} is not one of 1, true, "
                               f"yes, on (or 0, false, no, off)")


def test_add_arguments_declares_every_flag() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--workers", "3", "--trace-leaks", "--status-file", "/x"])
    given = {s.name: getattr(args, s.name) for s in config.SETTINGS if "run" in s.commands}
    assert given["max_requests"] is None
    cfg = config.load("h.f", given, {"FORKRIC_WORKERS": "9"})
    assert (cfg.workers, cfg.trace_leaks, cfg.status_file) == (3, True, "/x")
    with pytest.raises(SystemExit):
        parser.parse_args(["--no-such-flag"])
    with pytest.raises(SystemExit):  # the service's flags are not the runtime's
        parser.parse_args(["--port", "1"])


def test_each_command_declares_its_own_settings() -> None:
    for command in ("run", "local", "soak", "invoke", "load"):
        parser = argparse.ArgumentParser()
        config.add_arguments(parser, command)
        declared = {a.dest for a in parser._actions} - {"help"}
        assert declared == {s.name for s in config.SETTINGS if command in s.commands}


def test_local_and_soak_default_to_the_cpus_and_lambda_s_timeout() -> None:
    import os

    cfg = config.load("h.f", {}, {}, "local")
    assert (cfg.workers, cfg.timeout_s) == (os.cpu_count() or 1, 3.0)
    assert config.load("h.f", {}, {"FORKRIC_WORKERS": "2"}, "soak").workers == 2
    assert config.load("h.f", {}, {}, "run").timeout_s == 0.0  # the runtime trusts deadlines


@pytest.mark.parametrize(("given", "environ", "named"), [
    ({}, {}, "--payload"),  # not given: its flag, as the help names it
    ({"payload": "@x.json"}, {}, "--payload"),
    ({}, {"FORKRIC_PAYLOAD": "@x.json"}, "FORKRIC_PAYLOAD"),
    ({"payload": "@x.json"}, {"FORKRIC_PAYLOAD": "@y.json"}, "--payload"),  # the flag won
])
def test_a_setting_is_named_as_the_user_set_it(given: dict[str, Any], environ: dict[str, str],
                                               named: str) -> None:
    # Checks made after load (an unreadable --payload, a bad --event) name what was set: the
    # variable when only the environment set it (they named the flag, found by trying).
    assert config.load("h.f", given, environ, "invoke").named("payload") == named
    assert config.load("h.f", {}, {"FORKRIC_SOAK_EVENT": "{"}, "load").named("event") == \
        "FORKRIC_SOAK_EVENT"
