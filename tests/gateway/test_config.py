"""Settings: flags over environment over TOML over defaults, clear errors, masked secrets."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import ConfigError, Settings
from gateway.settings_text import format_toml, mask_url


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eventgw.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = Settings.load({})
    assert settings == Settings()
    assert (settings.http_host, settings.http_port, settings.grpc_port) == (
        "127.0.0.1",
        8080,
        50051,
    )
    assert settings.database_url == "sqlite:///eventgw.db"
    assert settings.log_format == "json"


def test_flags_over_environment_over_toml_over_defaults(tmp_path: Path) -> None:
    path = toml(tmp_path, 'http_port = 1001\ngrpc_port = 1002\nworkers = 3\nlog_level = "debug"\n')
    env = {"EVENTGW_HTTP_PORT": "2001", "EVENTGW_GRPC_PORT": "2002"}
    settings = Settings.load(env, config_file=path, http_port=3001)
    assert settings.http_port == 3001  # flag
    assert settings.grpc_port == 2002  # environment
    assert (settings.workers, settings.log_level) == (3, "debug")  # TOML
    assert settings.max_body_bytes == Settings().max_body_bytes  # default
    assert Settings.load(env, config_file=path).http_port == 2001
    assert Settings.load({}, config_file=path).http_port == 1001
    assert Settings.load({}, config_file=path, http_port=None).http_port == 1001  # None: unset


def test_config_file_from_environment_and_flag(tmp_path: Path) -> None:
    from_env = toml(tmp_path, "http_port = 1111\n")
    other = tmp_path / "other.toml"
    other.write_text("http_port = 2222\n")
    assert Settings.load({"EVENTGW_CONFIG": str(from_env)}).http_port == 1111
    assert Settings.load({"EVENTGW_CONFIG": str(from_env)}, config_file=other).http_port == 2222


def test_toml_types_are_checked_and_floats_take_integers(tmp_path: Path) -> None:
    path = toml(
        tmp_path, 'queue_wait_seconds = 3\naccess_log = false\nnats_url = "nats://n:4222"\n'
    )
    settings = Settings.load({}, config_file=path)
    assert settings.queue_wait_seconds == 3.0 and isinstance(settings.queue_wait_seconds, float)
    assert settings.access_log is False
    assert settings.nats_url == "nats://n:4222"
    assert Settings.load({}, config_file=toml(tmp_path, "http-port = 9\n")).http_port == 9

    for text, message in [
        ('http_port = "8080"', "http_port must be an integer, not a string"),
        ("http_port = true", "http_port must be an integer, not a boolean"),
        ("access_log = 1", "access_log must be true or false, not an integer"),
        ("queue_wait_seconds = [1]", "queue_wait_seconds must be a number, not an array"),
        ("[http]\nport = 1", "unknown setting 'http'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Settings.load({}, config_file=toml(tmp_path, text))


def test_unknown_toml_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load({}, config_file=toml(tmp_path, "htp_port = 80\n"))
    assert "unknown setting 'htp_port'" in str(caught.value)
    assert "did you mean 'http_port'?" in str(caught.value)
    assert str(tmp_path / "eventgw.toml") in str(caught.value)
    # The multi-process directory comes from the environment only.
    with pytest.raises(ConfigError, match="unknown setting 'prometheus_multiproc_dir'"):
        Settings.load({}, config_file=toml(tmp_path, 'prometheus_multiproc_dir = "/tmp"\n'))


def test_unreadable_or_invalid_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load({}, config_file=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Settings.load({}, config_file=toml(tmp_path, "http_port = \n"))


def test_invalid_values_name_the_setting_and_where_it_came_from(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, str], dict[str, object], str]] = [
        ({"EVENTGW_HTTP_PORT": "70000"}, {}, r"http_port: 70000 is not a port .*EVENTGW_HTTP_PORT"),
        ({"EVENTGW_WORKERS": "many"}, {}, r"EVENTGW_WORKERS: 'many' is not an integer"),
        ({"EVENTGW_ACCESS_LOG": "maybe"}, {}, r"EVENTGW_ACCESS_LOG: 'maybe' is not true or false"),
        ({}, {"workers": 0}, r"workers: must be at least 1 \(from the command line\)"),
        ({"EVENTGW_LOG_LEVEL": "loud"}, {}, r"log_level: 'loud' is not one of debug, info"),
        ({"EVENTGW_LOG_FORMAT": "xml"}, {}, r"log_format: 'xml' is not one of json, text"),
        ({"EVENTGW_DATABASE_URL": "mysql://x"}, {}, r"database_url: must be sqlite"),
        ({"EVENTGW_NATS_URL": "http://n"}, {}, r"nats_url: must be nats://"),
        ({"EVENTGW_MAX_BODY_BYTES": "0"}, {}, r"max_body_bytes: must be positive, not 0"),
        ({"EVENTGW_QUEUE_WAIT_SECONDS": "-1"}, {}, r"queue_wait_seconds: must not be negative"),
        ({"EVENTGW_COMMIT_WRITERS": "-1"}, {}, r"commit_writers: must not be negative"),
    ]
    for env, flags, message in cases:
        with pytest.raises(ConfigError, match=message):
            Settings.load(env, **flags)
    path = toml(tmp_path, "grpc_port = -1\n")
    with pytest.raises(ConfigError, match=rf"grpc_port: -1 is not a port .*in {path}"):
        Settings.load({}, config_file=path)
    assert Settings.load({"EVENTGW_ACCESS_LOG": "off"}).access_log is False


def test_multiprocess_directory_comes_from_prometheus_variable() -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": "/run/eventgw-metrics"}
    assert Settings.load(env).prometheus_multiproc_dir == "/run/eventgw-metrics"
    assert Settings.load({}).prometheus_multiproc_dir is None
    ignored = {"EVENTGW_PROMETHEUS_MULTIPROC_DIR": "/elsewhere"}
    assert Settings.load(ignored).prometheus_multiproc_dir is None


def test_secrets_are_masked_in_describe_and_print_config() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://eventgw:s3cret@db:5432/eventgw?sslmode=require",
        nats_url="nats://natstoken@nats:4222",
    )
    described = settings.describe()
    assert (
        described["database_url"]
        == "postgresql+asyncpg://eventgw:***@db:5432/eventgw?sslmode=require"
    )
    assert described["nats_url"] == "nats://***@nats:4222"
    text = format_toml(described)
    assert "s3cret" not in text and "natstoken" not in text
    assert mask_url("nats://user:pw@n:4222") == "nats://user:***@n:4222"
    assert mask_url("postgresql://u@h/db?password=pw") == "postgresql://u@h/db?password=***"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("sqlite:///var/lib/eventgw.db") == "sqlite:///var/lib/eventgw.db"


def test_print_config_output_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    settings = Settings(http_port=9000, access_log=False, queue_wait_seconds=0.5)
    text = format_toml(settings.describe())
    assert "# nats_url =" in text  # unset: a comment
    assert tomllib.loads(text)["http_port"] == 9000
    assert Settings.load({}, config_file=toml(tmp_path, text)) == settings


def test_edge_settings_from_toml_environment_and_flags(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        'ops_port = 9191\ntls_cert = "/etc/gw.crt"\ntls_key = "/etc/gw.key"\n'
        "http_body_timeout_seconds = 30\n",
    )
    env = {"EVENTGW_MAX_CONNECTIONS": "500", "EVENTGW_GRPC_CLIENT_CA": "/etc/ca.pem"}
    settings = Settings.load(env, config_file=path, ops_host="0.0.0.0")
    assert (settings.ops_host, settings.ops_port) == ("0.0.0.0", 9191)
    assert (settings.tls_cert, settings.tls_key) == ("/etc/gw.crt", "/etc/gw.key")
    assert settings.grpc_client_ca == "/etc/ca.pem"
    assert (settings.max_connections, settings.http_body_timeout_seconds) == (500, 30.0)
    defaults = Settings()
    assert (defaults.ops_host, defaults.ops_port) == ("127.0.0.1", 9090)
    assert defaults.tls_cert is None and defaults.max_connections > 0


def test_tls_settings_go_together() -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        Settings(tls_cert="/etc/gw.crt")
    with pytest.raises(ConfigError, match="grpc_client_ca: needs a server certificate"):
        Settings(grpc_client_ca="/etc/ca.pem")
    with pytest.raises(ConfigError, match="http_header_timeout_seconds: must be positive"):
        Settings(http_header_timeout_seconds=0)


def test_two_listeners_on_one_address_are_refused() -> None:
    # They would both bind (SO_REUSEPORT) and split the connections between two different apps.
    with pytest.raises(ConfigError, match="ops_port: 8080 is http_port too"):
        Settings(ops_port=8080)
    with pytest.raises(ConfigError, match="grpc_port: 9000 is http_port too"):
        Settings(http_host="0.0.0.0", http_port=9000, grpc_host="10.0.0.1", grpc_port=9000)
    with pytest.raises(ConfigError, match="ops_port") as caught:
        Settings.load({"EVENTGW_OPS_PORT": "50051"})
    assert "EVENTGW_OPS_PORT" in str(caught.value)
    # One port number on two distinct addresses is two listeners; port 0 picks a free one each.
    Settings(http_host="10.0.0.1", ops_host="10.0.0.2", ops_port=8080)
    Settings(http_port=0, grpc_port=0, ops_port=0)


def test_several_relay_processes_need_postgresql() -> None:
    with pytest.raises(ConfigError, match="relay_processes: SQLite has no row locks"):
        Settings(relay_processes=2)
    with pytest.raises(ConfigError, match="relay_processes: must be at least 1"):
        Settings(relay_processes=0)
    postgres = "postgresql://eventgw@db/eventgw"
    assert Settings(database_url=postgres, relay_processes=3).relay_processes == 3
