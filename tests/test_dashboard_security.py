"""The dashboard's password gate: hashing, the gate in the app (AppTest), and what `auditkit dashboard` hands
the server (the Streamlit process is replaced by a recorder, so no port is ever opened here)."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from auditkit import ConfigError, RunStore
from auditkit.cli import main
from auditkit.dashboard import AUTH_ENV, PASSWORD_ENV, check_secret, hash_secret
from auditkit.resources import resource_dir

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = resource_dir("dashboards") / "app.py"
PASSWORD = "correct horse battery staple"


def test_hash_secret_is_salted_scrypt_and_checks_in_constant_time() -> None:
    encoded = hash_secret(PASSWORD, salt=bytes(range(16)))
    scheme, n, r, p, salt, digest = encoded.split("$")
    # an independent recomputation with hashlib's scrypt at the stored parameters
    expected = hashlib.scrypt(
        PASSWORD.encode(), salt=bytes(range(16)), n=int(n), r=int(r), p=int(p), dklen=32
    )
    assert (scheme, salt, digest) == ("scrypt", bytes(range(16)).hex(), expected.hex())
    assert int(n) >= 2**14
    assert hash_secret(PASSWORD) != hash_secret(PASSWORD)  # a fresh salt each time
    assert check_secret(PASSWORD, hash_secret(PASSWORD))
    assert not check_secret(PASSWORD + " ", encoded) and not check_secret("", encoded)
    for bad in ("", "plain-password", "md5$x$y", "scrypt$16384$8$1$zz$00"):
        with pytest.raises(ConfigError, match=AUTH_ENV):
            check_secret(PASSWORD, bad)
    with pytest.raises(ConfigError, match="empty"):
        hash_secret("")


@pytest.fixture
def gated(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "home")
    run = store.create_run("train", name="secret-run-name", config={})
    monkeypatch.setenv("AUDITKIT_HOME", str(store.home))
    monkeypatch.setenv(AUTH_ENV, hash_secret(PASSWORD))
    return run


def _login_page(at: AppTest) -> None:
    """Only the gate: its title, one password box, no data and no page."""
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["auditkit dashboard"]
    (box,) = at.text_input
    assert box.label == "Password" and box.proto.type == box.proto.PASSWORD
    assert not at.dataframe and not at.metric and not at.selectbox


def test_gate_shows_no_data_until_the_password_is_right(gated) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    _login_page(at)
    at.switch_page("views/bias.py").run()  # a page's own address does not pass the gate
    _login_page(at)

    at.text_input[0].input("not the password")
    at.button[0].click().run()
    _login_page(at)
    assert [e.value for e in at.error] == ["Wrong password."]

    at.text_input[0].input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Bias"]  # the page that was asked for, now open
    at.switch_page("views/overview.py").run()  # and the session stays open
    assert [t.value for t in at.title] == ["Overview"]
    assert "secret-run-name" in "\n".join(df.value.to_csv() for df in at.dataframe)


def test_gate_stays_shut_with_a_malformed_hash(gated, monkeypatch) -> None:
    monkeypatch.setenv(AUTH_ENV, PASSWORD)  # a plain password where a hash belongs
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    _login_page(at)
    at.text_input[0].input(PASSWORD)
    at.button[0].click().run()
    _login_page(at)
    assert len(at.error) == 1 and "auditkit dashboard --password-env" in at.error[0].value


@pytest.fixture
def launched(monkeypatch, tmp_path):
    """`auditkit dashboard ARGS` with Streamlit replaced by a recorder: (status, call, stdout, stderr)."""
    calls: list[dict] = []

    def record(command, env=None, **kwargs):
        calls.append({"command": list(command), "env": dict(env or {})})
        return 0

    monkeypatch.setattr(subprocess, "call", record)
    for name in (PASSWORD_ENV, AUTH_ENV, "REVIEW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)

    def launch(*args: str, capsys) -> tuple[int, dict | None, str, str]:
        with pytest.raises(SystemExit) as done:
            main(["dashboard", "--home", str(tmp_path / "home"), *args])
        out, err = capsys.readouterr()
        return done.value.code, (calls[-1] if calls else None), out, err

    return launch


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_public_host_without_a_password_is_refused(launched, capsys) -> None:
    status, call, _, err = launched("--host", "0.0.0.0", capsys=capsys)
    assert status == 2 and call is None
    assert err.startswith("error: --host 0.0.0.0") and len(err.strip().splitlines()) == 1
    assert "--password-env" in err and "--token" in err


def test_public_host_with_a_password_gets_only_its_hash(launched, capsys, monkeypatch) -> None:
    monkeypatch.setenv("REVIEW_PASSWORD", PASSWORD)
    monkeypatch.setenv(AUTH_ENV, hash_secret("left over from elsewhere"))
    status, call, out, _ = launched("--host", "0.0.0.0", "--password-env", "REVIEW_PASSWORD", capsys=capsys)
    assert status == 0 and _option(call["command"], "--server.address") == "0.0.0.0"
    env = call["env"]
    assert check_secret(PASSWORD, env[AUTH_ENV])  # the inherited hash was replaced
    assert "REVIEW_PASSWORD" not in env and PASSWORD_ENV not in env
    assert not any(PASSWORD in part for part in call["command"])
    assert not any(PASSWORD in value for value in env.values())
    assert PASSWORD not in out


def test_default_password_variable_and_token(launched, capsys, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    status, call, _, _ = launched("--host", "0.0.0.0", capsys=capsys)
    assert status == 0 and check_secret(PASSWORD, call["env"][AUTH_ENV]) and PASSWORD_ENV not in call["env"]

    monkeypatch.delenv(PASSWORD_ENV)
    status, call, out, _ = launched("--host", "0.0.0.0", "--token", capsys=capsys)
    token = out.split("token (reviewers enter it on the first page): ", 1)[1].split()[0]
    assert status == 0 and len(token) >= 32 and check_secret(token, call["env"][AUTH_ENV])
    assert not any(token in part for part in call["command"])


def test_loopback_stays_open_without_a_password(launched, capsys, monkeypatch) -> None:
    monkeypatch.setenv(AUTH_ENV, hash_secret("left over from elsewhere"))
    status, call, _, _ = launched(capsys=capsys)
    assert status == 0 and _option(call["command"], "--server.address") == "127.0.0.1"
    assert AUTH_ENV not in call["env"]  # no gate unless this launch asked for one


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--password-env", "REVIEW_PASSWORD"), {}, "REVIEW_PASSWORD: that environment variable is not set"),
        (("--password-env", "REVIEW_PASSWORD"), {"REVIEW_PASSWORD": "short"}, "has 5 characters"),
        (("--token", "--password-env", "REVIEW_PASSWORD"), {"REVIEW_PASSWORD": PASSWORD}, "not both"),
    ],
)
def test_bad_password_options_are_refused(launched, capsys, monkeypatch, args, env, message) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, call, _, err = launched("--host", "0.0.0.0", *args, capsys=capsys)
    assert status == 2 and call is None and err.startswith("error: ") and message in err
