"""Security: loopback by default, CURVE with an allow-list for anything else, key creation,
and client-chosen names that cannot leave their folder."""

import pytest

from bridge.cli import main as v2a
from bridge.client import Client, DaemonUnavailable
from daemon.security import SecurityError, create_keys, is_loopback, safe_filename, safe_join
from daemon.server import Server, ServerConfig, StartupError
from tests.daemon_harness import running_server, wait_for
from tests.engines import ToneEngine


@pytest.mark.parametrize(("endpoint", "loopback"), [
    ("tcp://127.0.0.1:5755", True), ("tcp://127.8.0.1:1", True), ("tcp://localhost:5755", True),
    ("tcp://[::1]:5755", True), ("ipc:///tmp/v2a.sock", True),
    ("tcp://0.0.0.0:5755", False), ("tcp://*:5755", False), ("tcp://192.168.1.20:5755", False),
    ("tcp://eth0:5755", False), ("tcp://[::]:5755", False),
])
def test_what_counts_as_loopback(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_non_loopback_bind_needs_curve_keys(tmp_path):
    server = Server(ServerConfig(bind="tcp://0.0.0.0:0", cache_dir=tmp_path / "c"), ToneEngine())
    with pytest.raises(StartupError, match="--curve-keys"):
        server.start()
    server.context.term()


def test_v2a_keys_create(tmp_path, capsys):
    assert v2a(["keys", "create", str(tmp_path / "keys")]) == 0
    out = capsys.readouterr().out
    assert "--curve-keys" in out
    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret", "clients/client.key"):
        assert (tmp_path / "keys" / name).is_file()
    assert (tmp_path / "keys" / "client.key_secret").stat().st_mode & 0o077 == 0


def test_curve_admits_allow_listed_clients_only(tmp_path):
    keys = tmp_path / "keys"
    create_keys(keys)
    # a stranger with its own key pair who knows the server's public key
    stranger = tmp_path / "stranger"
    create_keys(stranger)
    (stranger / "server.key").write_bytes((keys / "server.key").read_bytes())
    with running_server(tmp_path / "cache", bind="tcp://0.0.0.0:0", curve_keys=keys) as server:
        port = server.endpoint.rsplit(":", 1)[1]
        endpoint = f"tcp://127.0.0.1:{port}"
        with Client(endpoint, curve_keys_dir=keys, timeout=10) as allowed:
            assert allowed.ping() > 0
            assert allowed.status()["curve"] is True
        with Client(endpoint, curve_keys_dir=stranger, timeout=1.0) as refused, pytest.raises(DaemonUnavailable):
            refused.ping()
        with Client(endpoint, timeout=1.0) as plain, pytest.raises(DaemonUnavailable):
            plain.ping()
        # a client allow-listed while the daemon runs gets in (the list is re-read on change)
        create_keys(keys, "laptop")
        laptop = tmp_path / "laptop"
        laptop.mkdir()
        for name, target in (("server.key", "server.key"), ("laptop.key_secret", "client.key_secret")):
            (laptop / target).write_bytes((keys / name).read_bytes())

        def laptop_gets_in() -> bool:
            with Client(endpoint, curve_keys_dir=laptop, timeout=0.5) as late:
                try:
                    return late.ping() > 0
                except DaemonUnavailable:
                    return False

        wait_for(laptop_gets_in, timeout=20)


@pytest.mark.parametrize("name", [
    "../escape.wav", "a/../../escape.wav", "/etc/passwd", "C:\\Windows\\x.wav", "\\\\server\\share",
    "", "bad\0name", "..", "a\\..\\..\\escape.wav",
])
def test_safe_join_refuses_names_that_leave_the_folder(tmp_path, name):
    with pytest.raises(SecurityError):
        safe_join(tmp_path, name)


def test_safe_join_refuses_links_pointing_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path.parent)
    with pytest.raises(SecurityError, match="outside"):
        safe_join(tmp_path / "out", "link/x.wav")


def test_safe_join_and_safe_filename_keep_good_names(tmp_path):
    assert safe_join(tmp_path, "shot 010/take1.wav") == (tmp_path / "shot 010" / "take1.wav").resolve()
    assert safe_filename("../../Car chase: take #2?") == "Car chase_ take _2"
    assert safe_filename("..") == "clip" and safe_filename("") == "clip"
    assert "/" not in safe_filename("a/b\\c") and "\\" not in safe_filename("a/b\\c")


def test_v2a_keys_create_where_it_cannot_write(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert v2a(["keys", "create", str(tmp_path / "file" / "keys")]) == 1
    err = capsys.readouterr().err
    assert err == (f"v2a: could not write {tmp_path / 'file' / 'keys' / 'clients'} (Not a directory); "
                   "part of its path is a file, not a folder: choose another path\n")
