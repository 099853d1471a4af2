"""The operator's command line end to end on SQLite files: ``gateway.cli.main([...], env={...})``.

Help and examples, ``serve --print-config``, the schema rule of ``serve`` (the embedded default
upgrades itself; any other database behind head is refused, naming ``eventgw db upgrade``),
projects, keys (secret shown once), export, purge, and progress on a terminal only.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import cli, migrate, progress
from gateway.config import Settings
from gateway.model import Submission
from gateway.pb.event_pb2 import Event
from gateway.runtime import open_runtime
from gateway.storage.engine import create_engine
from tests.harness import Gateway

COMMANDS = ("serve", "db", "projects", "keys", "events", "purge", "relay", "bench")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"EVENTGW_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


def run(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    code = cli.main(argv, env=env)
    return code, capsys.readouterr().out


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def revision(url: str) -> str | None:
    engine = create_engine(Settings(database_url=url))
    try:
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


def test_help_lists_every_command_and_each_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"], env={})
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command} " in out, command
    assert "examples:" in out and "EVENTGW_CONFIG" in out
    for argv in [[c] for c in COMMANDS] + [["db", "upgrade"], ["keys", "create"]]:
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"], env={})
        assert "examples:\n  eventgw " + argv[0] in capsys.readouterr().out, argv


def test_serve_print_config_shows_effective_settings_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "eventgw.toml"
    config.write_text('grpc_port = 6000\nlog_format = "text"\nhttp_port = 1\n')
    env = {
        "EVENTGW_DATABASE_URL": "postgresql://eventgw:hunter2@db:5432/eventgw",
        "EVENTGW_NATS_URL": "nats://tok3n@nats:4222",
        "EVENTGW_HTTP_PORT": "7000",
    }
    argv = ["serve", "--print-config", "--config", str(config), "--http", "0.0.0.0:9000"]
    code, out = run(argv, env, capsys)
    assert code == 0
    assert 'http_host = "0.0.0.0"\nhttp_port = 9000\n' in out  # flag over env over TOML
    assert "grpc_port = 6000\n" in out and 'log_format = "text"\n' in out  # TOML
    assert 'database_url = "postgresql://eventgw:***@db:5432/eventgw"' in out
    assert 'nats_url = "nats://***@nats:4222"' in out
    assert "hunter2" not in out and "tok3n" not in out


def test_invalid_configuration_is_refused_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("http_prot = 1\n")
    assert cli.main(["serve", "--print-config", "--config", str(config)], env={}) == 2
    assert "unknown setting 'http_prot' (did you mean 'http_port'?)" in capsys.readouterr().err
    assert cli.main(["serve", "--print-config"], env={"EVENTGW_WORKERS": "0"}) == 2
    assert "workers: must be at least 1 (from EVENTGW_WORKERS)" in capsys.readouterr().err


def test_publishing_failed_events_is_off_unless_a_flag_or_the_environment_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "relay_failed_events = false\n" in run(["serve", "--print-config"], {}, capsys)[1]
    argv = ["serve", "--print-config", "--relay", "--relay-failed-events"]
    assert "relay_failed_events = true\n" in run(argv, {}, capsys)[1]
    env = {"EVENTGW_RELAY_FAILED_EVENTS": "yes"}
    assert "relay_failed_events = true\n" in run(["serve", "--print-config"], env, capsys)[1]
    argv = ["serve", "--relay-failed-events", "--nats-url", "nats://127.0.0.1:4222"]
    assert cli.main(argv, env={}) == 2
    assert "add --relay" in capsys.readouterr().err


def test_serve_refuses_a_database_behind_head_naming_the_fix(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.logs.configure", lambda *args, **kwargs: None)
    monkeypatch.setattr("gateway.server.run_forever", lambda main: pytest.fail("served"))
    # An empty SQLite file that is not the embedded default is not migrated behind your back.
    assert cli.main(["serve"], env=env) == 1
    err = capsys.readouterr().err
    assert "schema is at nothing" in err and "run `eventgw db upgrade`" in err
    # Nor is one downgraded below head.
    url = env["EVENTGW_DATABASE_URL"]
    assert cli.main(["db", "upgrade"], env=env) == 0
    assert cli.main(["db", "downgrade", "base"], env=env) == 0
    assert cli.main(["serve"], env=env) == 1
    assert "run `eventgw db upgrade`" in capsys.readouterr().err
    assert asyncio.run(revision(url)) is None


def test_embedded_default_database_upgrades_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    asyncio.run(cli._prepare(Settings.load({}), out))
    assert asyncio.run(revision("sqlite:///eventgw.db")) == migrate.head_revision()
    assert (tmp_path / "eventgw.db").exists()
    assert "api key:" in out.getvalue()  # a first project and key, shown once
    again = io.StringIO()
    asyncio.run(cli._prepare(Settings.load({}), again))
    assert again.getvalue() == ""


def test_projects_and_keys(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["db", "upgrade"], env, capsys)[0] == 0
    code, out = run(
        ["projects", "create", "Shop", "--allowed-origin", "https://a.example", "--json"],
        env,
        capsys,
    )
    (project,) = lines(out)
    assert code == 0 and project["name"] == "Shop"
    assert project["allowed_origins"] == ["https://a.example"] and project["active"] is True
    code, out = run(["projects", "list", "--json"], env, capsys)
    assert [p["id"] for p in lines(out)] == [project["id"]]

    argv = ["keys", "create", "--project", project["id"], "--prefix", "dbdy_", "--json"]
    code, out = run([*argv, "--rate-limit", "100/min"], env, capsys)
    (key,) = lines(out)
    assert code == 0 and key["key"].startswith("dbdy_") and key["rate_limit"] == "100/min"
    assert key["project_id"] == project["id"] and key["revoked_at"] is None

    code, out = run(["keys", "list", "--project", project["id"], "--json"], env, capsys)
    (listed,) = lines(out)
    assert key["key"] not in out  # the secret is shown once, by create
    assert not {"key", "key_hash", "hash", "secret"} & set(listed)
    assert listed["id"] == key["id"] and listed["hint"] and key["key"].endswith(listed["hint"])

    assert run(["keys", "revoke", key["id"]], env, capsys)[0] == 0
    (revoked,) = lines(run(["keys", "list", "--project", project["id"], "--json"], env, capsys)[1])
    assert revoked["revoked_at"] is not None
    assert cli.main(["keys", "revoke", key["id"]], env=env) == 1
    assert f"no active key {key['id']}" in capsys.readouterr().err
    assert cli.main(["keys", "create", "--project", "nope"], env=env) == 1
    assert (
        cli.main(["keys", "create", "--project", project["id"], "--rate-limit", "lots"], env=env)
        == 2
    )


async def ingest(url: str, project_id: str, ids: list[str], *, key: str | None = None) -> None:
    settings = Settings(database_url=url, idempotency_retention_seconds=0.001)
    async with open_runtime(settings) as runtime:
        events = [Event(id=i, name="order", dialect="grpc") for i in ids]
        submission = Submission(
            project_id=project_id,
            endpoint="test",
            size=len(events),
            events=events,
            idempotency_key=key,
            fingerprint="f",
        )
        await runtime.ingestor.submit(submission)


def test_events_export_and_purge(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = env["EVENTGW_DATABASE_URL"]
    assert run(["db", "upgrade"], env, capsys)[0] == 0
    (project,) = lines(run(["projects", "create", "P", "--json"], env, capsys)[1])
    asyncio.run(ingest(url, project["id"], ["e-1", "e-2", "e-3"], key="k-1"))

    code, out = run(["events", "export", "--project", project["id"]], env, capsys)
    exported = lines(out)
    assert code == 0 and [e["id"] for e in exported] == ["e-1", "e-2", "e-3"]
    assert {e["projectId"] for e in exported} == {project["id"]}
    code, out = run(["events", "export", "--project", project["id"], "--limit", "2"], env, capsys)
    assert len(lines(out)) == 2
    future = ["events", "export", "--project", project["id"], "--since", "2999-01-01T00:00:00Z"]
    assert run(future, env, capsys) == (0, "")

    time.sleep(0.01)  # the key was kept for 1 ms after completion
    purged = (
        "purged {} expired idempotency keys\n"
        "purged 0 delivered events older than the retention\npurged 0 failed events\n"
    )
    assert run(["purge"], env, capsys) == (0, purged.format(1))
    assert run(["purge"], env, capsys) == (0, purged.format(0))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only() -> None:
    terminal = Terminal()
    counter = progress.Progress("exported events", stream=terminal, interval=0)
    for _ in range(3):
        counter.add()
    counter.done("3 written")
    shown = terminal.getvalue()
    assert "\rexported events: 3 (" in shown and shown.endswith(" — 3 written\n")
    pipe = io.StringIO()
    quiet = progress.Progress("exported events", stream=pipe, interval=0)
    quiet.add(5)
    quiet.done()
    progress.note("hello", stream=pipe)
    assert pipe.getvalue() == "" and quiet.count == 5
    progress.note("hello", stream=terminal)
    assert terminal.getvalue().endswith("hello\n")


def test_migration_steps_are_shown_on_a_terminal(tmp_path: Path) -> None:
    terminal = Terminal()
    with progress.migration_steps(stream=terminal):
        migrate.upgrade(f"sqlite:///{tmp_path / 'steps.db'}")
    assert "Running upgrade  -> " in terminal.getvalue()


async def test_events_export_shows_the_new_types_in_protobufs_json_mapping(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    site = {"client_id": gateway.project_id}
    vital = [{"path": "/", "metricName": "LCP", "metricValue": 1834.5}]
    error = [{"path": "/", "message": "boom", "lineno": 3, "errorType": "TypeError"}]
    async with aiohttp.ClientSession() as http:
        for path, body in (("/vitals", vital), ("/errors", error)):
            async with http.post(f"{gateway.http_url}{path}", params=site, json=body) as reply:
                assert reply.status == 200
    env = {"EVENTGW_DATABASE_URL": gateway.settings.database_url}
    argv = ["events", "export", "--project", gateway.project_id]
    assert await asyncio.to_thread(cli.main, argv, env=env) == 0
    exported = lines(capsys.readouterr().out)
    assert [(e["type"], e["name"]) for e in exported] == [
        ("EVENT_TYPE_WEB_VITAL", "web_vitals"),
        ("EVENT_TYPE_ERROR", "error"),
    ]
    assert exported[0]["webVital"] == {"metric": "LCP", "value": 1834.5}
    assert exported[1]["error"] == {"message": "boom", "line": "3", "errorType": "TypeError"}


def test_serve_refuses_tls_files_it_cannot_load(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr("gateway.logs.configure", lambda *args, **kwargs: None)
    monkeypatch.setattr("gateway.server.run_forever", lambda main: pytest.fail("served"))
    (tmp_path / "cert.pem").write_text("not a certificate")
    argv = ["serve", "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "no")]
    assert cli.main(argv, env=env) == 2
    assert "tls_cert/tls_key cannot be loaded" in capsys.readouterr().err
