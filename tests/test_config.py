"""Tests for rotatectl.config: search order, defaults, validation messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotatectl import registry
from rotatectl.config import (
    AdapterSpec,
    Config,
    find_config_file,
    load_config,
    validate_name,
)
from rotatectl.errors import ConfigError, UnknownCredentialError, UsageError
from rotatectl.model import OnStillUsed, Policy

# DESIGN.md section 4, verbatim.
DESIGN_EXAMPLE = """\
[defaults]
store = "local"
propagation = "30s"      # pending before promotion
overlap = "24h"          # previous stays accepted at least this long
max_age = "90d"          # a credential is due for rotation at this age
usage_quiet = "15m"      # old key counts as in use if seen within this window
on_still_used = "wait"   # wait | fail | force, once max_overlap has passed
max_overlap = "7d"
keep_previous = 1        # rolling window of accepted previous keys
retain = "7d"            # retired -> destroyed after this

[stores.aws]
type = "aws-secretsmanager"
region = "us-east-1"
# endpoint_url = "http://127.0.0.1:5000"   # any AWS-compatible endpoint
# profile = "ops"

[stores.vault]
type = "vault"
url = "http://127.0.0.1:8200"   # else $VAULT_ADDR
mount = "secret"
# namespace = "team-a"          # else $VAULT_NAMESPACE
auth = { method = "token" }     # token ($VAULT_TOKEN) | approle | kubernetes

[credentials."partners/acme"]
store = "aws"                    # or a list: ["vault", "aws"] publishes to both
path = "payments/partners/acme"
issuer = { type = "generated", prefix = "rk_live" }
usage = { type = "access-log", path = "/var/log/api/usage.jsonl" }
overlap = "48h"
scopes = ["read"]
notify = ["ops"]

[notifiers.ops]
type = "webhook"
url = "https://hooks.example.com/rotations"
secret_env = "ROTATECTL_WEBHOOK_SECRET"   # HMAC-signs each body
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private environment: HOME in tmp_path, no XDG or ROTATECTL variables."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home)}


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Config:
    file = write(tmp_path / "conf" / "rotatectl.toml", text)
    return load_config(file, env={"HOME": str(tmp_path)}, cwd=tmp_path)


def config_error(tmp_path: Path, text: str) -> str:
    """Load ``text`` expecting a ConfigError; return its message, checked to be one line."""
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "conf" / "rotatectl.toml") + ": ")
    return message


@pytest.fixture
def more_types(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the AWS, Vault and webhook adapters are installed."""
    real = registry.available
    extra = {
        "store": {"aws-secretsmanager": "x:Y", "vault": "x:Y"},
        "notifier": {"webhook": "x:Y"},
    }

    def available(kind: str) -> dict[str, str]:
        return dict(sorted({**real(kind), **extra.get(kind, {})}.items()))

    monkeypatch.setattr(registry, "available", available)


# -- loading ------------------------------------------------------------------


@pytest.mark.usefixtures("more_types")
def test_design_example_loads(tmp_path: Path) -> None:
    # Its store and notifier types are not installed yet: `more_types` adds them.
    cfg = load_text(tmp_path, DESIGN_EXAMPLE)
    assert cfg.file == tmp_path / "conf" / "rotatectl.toml"
    assert cfg.base_dir == tmp_path / "conf"
    assert cfg.state_dir == tmp_path / "conf" / ".rotatectl"
    assert cfg.defaults == Policy()  # the example spells out the built-in defaults
    assert cfg.default_store == "local"
    assert set(cfg.stores) == {"aws", "vault", "local"}
    assert cfg.stores["aws"] == AdapterSpec(
        "aws-secretsmanager", {"region": "us-east-1"}, "stores.aws"
    )
    assert cfg.stores["vault"].settings["auth"] == {"method": "token"}
    assert cfg.notifiers["ops"].type == "webhook"
    assert "type" not in cfg.notifiers["ops"].settings

    acme = cfg.credential("partners/acme")
    assert acme.declared
    assert acme.stores == ("aws",)
    assert acme.path == "payments/partners/acme"
    assert acme.issuer == AdapterSpec(
        "generated", {"prefix": "rk_live"}, 'credentials."partners/acme".issuer'
    )
    assert acme.usage.type == "access-log"
    assert acme.usage.table == 'credentials."partners/acme".usage'
    assert acme.policy == Policy(overlap=timedelta(hours=48))
    assert acme.scopes == ("read",)
    assert acme.notify == ("ops",)


def test_no_file_gives_defaults(env: dict[str, str], cwd: Path) -> None:
    cfg = load_config(None, env=env, cwd=cwd)
    assert cfg.file is None
    assert cfg.base_dir == cwd
    assert cfg.state_dir == Path(env["HOME"]) / ".local" / "state" / "rotatectl"
    assert cfg.defaults == Policy()
    assert cfg.default_store == "local"
    assert cfg.stores == {"local": AdapterSpec("local", {}, "stores.local")}
    assert cfg.notifiers == {}
    assert cfg.credentials == {}
    assert cfg.default_issuer.type == "generated"
    assert cfg.default_usage.type == "none"

    cred = cfg.credential("svc/api")
    assert not cred.declared
    assert cred.stores == ("local",)
    assert cred.path == "svc/api"
    assert cred.policy == Policy()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "")
    assert cfg.defaults == Policy()
    assert list(cfg.stores) == ["local"]


def test_context(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path / "rotatectl.toml", ""), env={"HOME": "/h", "X": "1"}, cwd=tmp_path
    )
    ctx = cfg.context("stores.local")
    assert ctx == registry.AdapterContext(
        "stores.local", tmp_path, tmp_path / ".rotatectl", tmp_path / "rotatectl.toml", ctx.env
    )
    assert ctx.env["X"] == "1"
    assert "X" not in repr(cfg)  # the environment may hold secrets


def test_full_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        """
        [defaults]
        propagation = "1h30m"
        overlap = "2d"
        max_age = "1w"
        usage_quiet = "90s"
        max_overlap = "3d"
        retain = "0s"
        recheck = "5m"
        on_still_used = "fail"
        keep_previous = 3
        unknown_usage = "quiet"
        issuer = { type = "generated", prefix = "rk_test" }
        usage = { type = "access-log", path = "usage.jsonl" }
        notify = ["log"]

        [notifiers.log]
        type = "log"

        [credentials.plain]

        [credentials."svc/b"]
        propagation = "0s"
        overlap = "12h"
        on_still_used = "force"
        keep_previous = 1
        unknown_usage = "busy"
        usage = { type = "none" }
        notify = []
        """,
    )
    expected = Policy(
        propagation=timedelta(hours=1, minutes=30),
        overlap=timedelta(days=2),
        max_age=timedelta(weeks=1),
        usage_quiet=timedelta(seconds=90),
        max_overlap=timedelta(days=3),
        retain=timedelta(0),
        recheck=timedelta(minutes=5),
        on_still_used=OnStillUsed.FAIL,
        keep_previous=3,
        unknown_usage_is_quiet=True,
    )
    assert cfg.defaults == expected
    plain = cfg.credential("plain")
    assert plain.policy == expected
    assert plain.issuer == AdapterSpec("generated", {"prefix": "rk_test"}, "defaults.issuer")
    assert plain.usage.settings == {"path": "usage.jsonl"}
    assert plain.notify == ("log",)
    assert plain.path == "plain"

    b = cfg.credential("svc/b")
    assert b.policy == Policy(
        propagation=timedelta(0),
        overlap=timedelta(hours=12),
        max_age=timedelta(weeks=1),
        usage_quiet=timedelta(seconds=90),
        max_overlap=timedelta(days=3),
        retain=timedelta(0),
        recheck=timedelta(minutes=5),
        on_still_used=OnStillUsed.FORCE,
        keep_previous=1,
        unknown_usage_is_quiet=False,
    )
    assert b.usage == AdapterSpec("none", {}, 'credentials."svc/b".usage')
    assert b.issuer.table == "defaults.issuer"
    assert b.notify == ()


def test_store_as_string_and_list(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        """
        [defaults]
        store = "b"
        [stores.a]
        type = "local"
        [stores.b]
        type = "local"
        [credentials.one]
        store = "a"
        [credentials.two]
        store = ["b", "a"]
        [credentials.three]
        """,
    )
    assert cfg.credential("one").stores == ("a",)
    assert cfg.credential("two").stores == ("b", "a")
    assert cfg.credential("three").stores == ("b",)
    assert set(cfg.stores) == {"a", "b", "local"}


def test_declared_local_store_replaces_builtin(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[stores.local]\ntype = "local"\nroot = "keys"\n')
    assert cfg.stores == {"local": AdapterSpec("local", {"root": "keys"}, "stores.local")}


# -- search order and state_dir ---------------------------------------------------


def test_search_order(tmp_path: Path, env: dict[str, str], cwd: Path) -> None:
    explicit = write(tmp_path / "explicit.toml", "")
    from_env = write(tmp_path / "env.toml", "")
    in_cwd = write(cwd / "rotatectl.toml", "")
    xdg = write(tmp_path / "xdg" / "rotatectl" / "rotatectl.toml", "")
    env = {**env, "ROTATECTL_CONFIG": str(from_env), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}

    assert find_config_file(explicit, env, cwd) == explicit
    assert find_config_file(None, env, cwd) == from_env
    del env["ROTATECTL_CONFIG"]
    assert find_config_file(None, env, cwd) == in_cwd
    in_cwd.unlink()
    assert find_config_file(None, env, cwd) == xdg
    xdg.unlink()
    assert find_config_file(None, env, cwd) is None


def test_xdg_config_defaults_to_home(env: dict[str, str], cwd: Path) -> None:
    home_cfg = write(Path(env["HOME"]) / ".config" / "rotatectl" / "rotatectl.toml", "")
    assert find_config_file(None, env, cwd) == home_cfg
    # The XDG spec says relative values are ignored.
    assert find_config_file(None, {**env, "XDG_CONFIG_HOME": "rel"}, cwd) == home_cfg


def test_relative_explicit_paths_resolve_against_cwd(env: dict[str, str], cwd: Path) -> None:
    file = write(cwd / "sub" / "c.toml", "")
    assert find_config_file("sub/c.toml", env, cwd) == file
    assert find_config_file(None, {**env, "ROTATECTL_CONFIG": "sub/c.toml"}, cwd) == file
    home_file = write(Path(env["HOME"]) / "r.toml", "")
    assert find_config_file("~/r.toml", env, cwd) == home_file


def test_explicit_file_must_exist(tmp_path: Path, env: dict[str, str], cwd: Path) -> None:
    write(cwd / "rotatectl.toml", "")  # present, but never a fallback for a named file
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"config file {missing} not found"):
        load_config(missing, env=env, cwd=cwd)
    with pytest.raises(ConfigError, match=r"ROTATECTL_CONFIG.*not found"):
        load_config(None, env={**env, "ROTATECTL_CONFIG": str(missing)}, cwd=cwd)


def test_state_dir_rules(tmp_path: Path, env: dict[str, str], cwd: Path) -> None:
    home = Path(env["HOME"])
    assert load_config(None, env=env, cwd=cwd).state_dir == home / ".local/state/rotatectl"
    xdg_env = {**env, "XDG_STATE_HOME": str(tmp_path / "st")}
    assert load_config(None, env=xdg_env, cwd=cwd).state_dir == tmp_path / "st" / "rotatectl"

    file = write(tmp_path / "etc" / "rotatectl.toml", "")
    assert load_config(file, env=xdg_env, cwd=cwd).state_dir == tmp_path / "etc" / ".rotatectl"

    forced = {**xdg_env, "ROTATECTL_STATE_DIR": str(tmp_path / "forced")}
    assert load_config(file, env=forced, cwd=cwd).state_dir == tmp_path / "forced"
    relative = {**env, "ROTATECTL_STATE_DIR": "state"}
    assert load_config(None, env=relative, cwd=cwd).state_dir == cwd / "state"
    # Loading never creates directories.
    assert not (tmp_path / "etc" / ".rotatectl").exists()
    assert not (home / ".local").exists()


# -- errors -------------------------------------------------------------------


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[defaults]\noverlap = \n")
    assert ": invalid TOML: " in message
    assert "line 2" in message


def test_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "rotatectl.toml"
    file.write_bytes(b"x = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(file, env={"HOME": str(tmp_path)}, cwd=tmp_path)


def test_unreadable(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "dir.toml", env={"HOME": str(tmp_path)}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        # unknown tables and keys
        ('[default]\nstore = "local"', "default: ", "unknown top-level table"),
        ("version = 1", "version: ", "unknown top-level table"),
        ("defaults = 3", "defaults: ", "expected a table, got integer"),
        (
            '[defaults]\noverlaps = "1h"',
            "[defaults] overlaps: ",
            "allowed: backoff, backoff_max, issuer, keep_previous",
        ),
        (
            '[credentials.a]\npaht = "x"',
            "[credentials.a] paht: ",
            "allowed: backoff, backoff_max, field, format, hooks, issuer, keep_previous",
        ),
        ("[credentials.a.b]", "[credentials.a] b: ", "quote credential names"),
        # secret formats
        ('[credentials.a]\nformat = "yaml"', "[credentials.a] format: ", "one of bare, json"),
        ('[credentials.a]\nformat = "json"', "[credentials.a] field: ", "needs the field"),
        ('[credentials.a]\nformat = "bare"\nfield = "k"', "[credentials.a] field: ", '"json"'),
        ("[credentials.a]\nstatic = { a = 1 }", "[credentials.a] static: ", "only for a JSON"),
        ('[credentials.a]\nfield = ""', "[credentials.a] field: ", "must not be empty"),
        (
            '[credentials.a]\nfield = "k"\nstatic = { k = "v" }',
            "[credentials.a] static: ",
            "names 'k', the field that holds the key",
        ),
        (
            '[credentials.a]\nfield = "k"\nstatic = { when = 2026-01-01 }',
            "[credentials.a] static.when: ",
            "a JSON value is needed, got date",
        ),
        # types
        ("[defaults]\nstore = 1", "[defaults] store: ", "expected a string, got integer"),
        ("[defaults]\nkeep_previous = true", "[defaults] keep_previous: ", "got boolean"),
        ('[defaults]\nkeep_previous = "2"', "[defaults] keep_previous: ", "got string"),
        ("[defaults]\nkeep_previous = 1.0", "[defaults] keep_previous: ", "got float"),
        ("[defaults]\nkeep_previous = 0", "[defaults] keep_previous: ", "at least 1, got 0"),
        ('[defaults]\nnotify = "ops"', "[defaults] notify: ", "expected an array of strings"),
        ("[defaults]\nnotify = [1]", "[defaults] notify: ", "got integer"),
        ("[credentials.a]\nscopes = [true]", "[credentials.a] scopes: ", "got boolean"),
        ('[credentials.a]\nscopes = ["r", "r"]', "[credentials.a] scopes: ", "twice"),
        ("[credentials.a]\npath = 1", "[credentials.a] path: ", "expected a string"),
        ('[credentials.a]\npath = ""', "[credentials.a] path: ", "must not be empty"),
        ("[credentials.a]\nstore = 1", "[credentials.a] store: ", "got integer"),
        ("[credentials.a]\nstore = []", "[credentials.a] store: ", "at least one store"),
        ("credentials = 1", "credentials: ", "expected a table"),
        ("[credentials]\na = 1", "credentials.a: ", "expected a table, got integer"),
        # durations
        ('[defaults]\noverlap = "1 hour"', "[defaults] overlap: ", "bad duration '1 hour'"),
        ('[defaults]\noverlap = "30m1h"', "[defaults] overlap: ", "largest to smallest"),
        ("[defaults]\nretain = 7", "[defaults] retain: ", "expected a duration string"),
        ('[credentials.a]\npropagation = ""', "[credentials.a] propagation: ", "bad duration"),
        ('[defaults]\nmax_age = "0s"', "[defaults] max_age: ", "longer than 0s"),
        ('[credentials.a]\nmax_age = "0d"', "[credentials.a] max_age: ", "longer than 0s"),
        ('[defaults]\nrecheck = "0s"', "[defaults] recheck: ", "longer than 0s"),
        # enums
        ('[defaults]\non_still_used = "retry"', "[defaults] on_still_used: ", "wait, fail, force"),
        ('[defaults]\nunknown_usage = "idle"', "[defaults] unknown_usage: ", "busy, quiet"),
        ("[defaults]\nunknown_usage = false", "[defaults] unknown_usage: ", "got boolean"),
        # overlap > max_overlap, with both values
        (
            '[defaults]\noverlap = "8d"',
            "[defaults] overlap: ",
            "overlap 8d is longer than max_overlap 7d",
        ),
        (
            '[defaults]\nmax_overlap = "1h"',
            "[defaults] max_overlap: ",
            "overlap 1d is longer than max_overlap 1h",
        ),
        (
            '[credentials.a]\noverlap = "2w"',
            "[credentials.a] overlap: ",
            "overlap 14d is longer than max_overlap 7d",
        ),
        (
            '[credentials.a]\nmax_overlap = "12h"',
            "[credentials.a] max_overlap: ",
            "overlap 1d is longer than max_overlap 12h",
        ),
        # missing references
        ('[defaults]\nstore = "aws"', "[defaults] store: ", "unknown store 'aws' (defined: local)"),
        ('[credentials.a]\nstore = "aws"', "[credentials.a] store: ", "unknown store 'aws'"),
        (
            '[credentials.a]\nstore = ["local", "aws"]',
            "[credentials.a] store: ",
            "unknown store 'aws'",
        ),
        (
            '[credentials.a]\nnotify = ["ops"]',
            "[credentials.a] notify: ",
            "unknown notifier 'ops' (defined: none)",
        ),
        ('[defaults]\nnotify = ["ops"]', "[defaults] notify: ", "unknown notifier 'ops'"),
        # adapter tables and types
        ("[stores.s]\nregion = 'x'", "[stores.s] type: ", "missing"),
        ("[stores.s]\ntype = 1", "[stores.s] type: ", "expected a string, got integer"),
        (
            "[stores.s]\ntype = 'aws-secrets'",
            "[stores.s] type: ",
            "unknown store type 'aws-secrets' (installed: aws-secretsmanager, aws-ssm, local,",
        ),
        ("[stores]\ns = 'local'", "stores.s: ", "expected a table, got string"),
        (
            '[stores."my store"]\ntype = "s3"',
            '[stores."my store"] type: ',
            "unknown store type 's3'",
        ),
        (
            "[notifiers.ops]\ntype = 'pager'",
            "[notifiers.ops] type: ",
            "unknown notifier type 'pager' (installed: ",
        ),
        (
            "[defaults]\nissuer = { type = 'aws_iam' }",
            "[defaults.issuer] type: ",
            "unknown issuer type 'aws_iam' (installed: aws-apigateway, aws-iam, ",
        ),
        ("[defaults]\nissuer = 'generated'", "[defaults] issuer: ", "expected a table"),
        (
            "[defaults]\nusage = { type = 'cloudwatch' }",
            "[defaults.usage] type: ",
            "unknown probe type 'cloudwatch' (installed: access-log, aws-iam, http, mysql, none, "
            "postgres, prometheus",
        ),
        (
            "[credentials.a]\nusage = { path = 'x' }",
            "[credentials.a.usage] type: ",
            "missing",
        ),
        (
            '[credentials."x/y"]\nissuer = { type = "nope" }',
            '[credentials."x/y".issuer] type: ',
            "unknown issuer type 'nope'",
        ),
        # credential names
        ('[credentials."/abs"]', '[credentials."/abs"]: ', "invalid credential name"),
        ('[credentials."a/../b"]', '[credentials."a/../b"]: ', "'..' segment"),
        ('[credentials."a b"]', '[credentials."a b"]: ', "invalid credential name"),
    ],
)
def test_errors_name_file_table_and_key(
    tmp_path: Path, text: str, where: str, fragment: str
) -> None:
    message = config_error(tmp_path, text)
    file = str(tmp_path / "conf" / "rotatectl.toml")
    assert message.startswith(f"{file}: {where}"), message
    assert fragment in message, message


def test_error_value_with_newline_stays_one_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[defaults]\non_still_used = "a\\nb"')
    assert "on_still_used" in message


def test_adapter_settings_are_not_validated_here(tmp_path: Path) -> None:
    # Each adapter's from_config checks its own settings later.
    cfg = load_text(tmp_path, '[stores.s]\ntype = "local"\nwhatever = [1, 2]\n')
    assert cfg.stores["s"].settings == {"whatever": [1, 2]}


# -- credentials ---------------------------------------------------------------


def test_declared_credentials_reject_typos(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[credentials."partners/acme"]\n[credentials."billing/stripe"]\n')
    with pytest.raises(UnknownCredentialError, match=r"did you mean: partners/acme\?") as info:
        cfg.credential("partners/acmee")
    assert str(tmp_path / "conf" / "rotatectl.toml") in str(info.value)
    with pytest.raises(UnknownCredentialError) as info:
        cfg.credential("totally-else")
    assert "did you mean" not in str(info.value)
    with pytest.raises(UnknownCredentialError):
        cfg.credential("partners/acmee", allow_adhoc=True)


def test_adhoc_credential(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[defaults]\noverlap = "1h"\nstore = "s"\n[stores.s]\ntype="local"')
    cred = cfg.credential("svc/new")
    assert not cred.declared
    assert cred.stores == ("s",)
    assert cred.policy.overlap == timedelta(hours=1)
    assert cred.issuer is cfg.default_issuer
    with pytest.raises(UnknownCredentialError, match="no credentials are declared"):
        cfg.credential("svc/new", allow_adhoc=False)
    with pytest.raises(UsageError, match="invalid credential name"):
        cfg.credential("../etc/passwd")


@pytest.mark.parametrize(
    "name",
    ["a", "partners/acme", "A-Z_0.9+x=y@z", "x" * 200, "a.b/c..d", ".hidden", "a/b/c"],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 201, "/a", "a/", "a//b", "..", "a/../b", "a/./b", ".", "a b", "a\\b", "é", "a\n"],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid credential name"):
        validate_name(name)


# -- names and paths: the stores' reserved segment, one secret per store and path ----


@pytest.mark.parametrize(
    "name",
    [
        ".rotatectl",
        "svc/a/.rotatectl",
        ".rotatectl/x",
        "svc/.rotatectl/index",
        "svc/a/.rotatectl-access-check",
    ],
)
def test_a_name_with_a_reserved_segment_is_refused(name: str) -> None:
    with pytest.raises(UsageError, match=r"invalid credential name .*'\.rotatectl'") as info:
        validate_name(name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["svc/rotatectl", "svc/a.rotatectl", "svc/..rotatectl"])
def test_rotatectl_elsewhere_in_a_segment_is_fine(name: str) -> None:
    assert validate_name(name) == name


def test_a_declared_name_with_a_reserved_segment_is_a_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[credentials."svc/a"]\n[credentials."svc/a/.rotatectl"]\n')
    assert '[credentials."svc/a/.rotatectl"]' in message
    assert "'.rotatectl'" in message


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("svc/a/.rotatectl", "'.rotatectl'"),
        ("svc/.rotatectl/index", "'.rotatectl'"),
        ("../etc", "'..' segment"),
        ("/svc/a", "start or end with '/'"),
        ("svc//a", "'//'"),
        ("svc a", "characters"),
    ],
)
def test_a_path_is_checked_like_a_name(tmp_path: Path, path: str, problem: str) -> None:
    message = config_error(tmp_path, f'[credentials."svc/b"]\npath = "{path}"\n')
    assert f'[credentials."svc/b"] path: invalid path {path!r}: ' in message
    assert problem in message


def test_two_credentials_on_one_store_and_path(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, '[credentials."svc/a"]\n[credentials."svc/b"]\npath = "svc/a"\n'
    )
    assert '[credentials."svc/b"] path:' in message
    for word in ('"svc/a"', '"svc/b"', 'store "local"', 'path "svc/a"'):
        assert word in message


def test_an_explicit_path_may_collide_with_a_later_default_path(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, '[credentials."svc/a"]\npath = "svc/b"\n[credentials."svc/b"]\n'
    )
    assert '[credentials."svc/a"] path:' in message  # the line that set the path
    for word in ('"svc/a"', '"svc/b"', 'store "local"', 'path "svc/b"'):
        assert word in message


STORES_AB = '[stores.a]\ntype = "local"\n[stores.b]\ntype = "local"\n'


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ('store = ["a", "b"]', 'store = "b"', "b"),
        ('store = "a"', 'store = ["b", "a"]', "a"),
        ('store = ["a", "b"]', 'store = ["b", "a"]', "b"),  # the first one found
        ("", 'store = ["b", "local"]', "local"),  # the default store
    ],
)
def test_any_shared_store_of_several_collides(
    tmp_path: Path, first: str, second: str, shared: str
) -> None:
    message = config_error(
        tmp_path,
        STORES_AB
        + f'[credentials.one]\n{first}\npath = "p"\n[credentials.two]\n{second}\npath = "p"\n',
    )
    for word in ('"one"', '"two"', f'store "{shared}"', 'path "p"'):
        assert word in message


def test_distinct_stores_or_paths_do_not_collide(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        STORES_AB
        + '[credentials.one]\nstore = "a"\npath = "p"\n'
        + '[credentials.two]\nstore = "b"\npath = "p"\n'
        + '[credentials.three]\nstore = ["a", "b"]\npath = "p/q"\n'
        + '[credentials."p"]\nstore = ["a", "b"]\npath = "p/q/r"\n',
    )
    assert [c.path for c in cfg.credentials.values()] == ["p", "p", "p/q", "p/q/r"]


# -- the test-only memory store is not installed ------------------------------------


def test_memory_is_not_a_store_type(tmp_path: Path) -> None:
    assert not registry.is_builtin("store", "memory")
    assert "memory" not in registry.available("store")
    message = config_error(tmp_path, '[stores.m]\ntype = "memory"\n')
    assert "[stores.m] type: unknown store type 'memory'" in message
    installed = message.partition("(installed: ")[2]
    for real in ("local", "aws-secretsmanager", "vault"):
        assert real in installed
    assert "memory" not in installed


# -- property -----------------------------------------------------------------

_FRAGMENTS = [
    "[defaults]",
    "[stores.s]",
    "[notifiers.n]",
    '[credentials."a/b"]',
    "[credentials.c]",
    "[[credentials]]",
    "[other]",
    'type = "local"',
    'type = "log"',
    'type = "nope"',
    'store = "s"',
    'store = ["s", "local"]',
    "store = []",
    'overlap = "1h30m"',
    'max_overlap = "1h"',
    'max_age = "0s"',
    "keep_previous = 0",
    "keep_previous = true",
    'on_still_used = "force"',
    'unknown_usage = "quiet"',
    'issuer = { type = "generated" }',
    "usage = { }",
    'notify = ["n"]',
    "scopes = [1]",
    "path = 1979-05-27",
    'recheck = "99999999999w"',
    "x = inf",
]


# No deadline: file I/O per example, and a busy CI machine must not fail it.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_FRAGMENTS),
            st.text(max_size=20),
            st.builds(
                lambda k, v: f"{k} = {v}",
                st.sampled_from(["store", "overlap", "a"]),
                st.text(max_size=10),
            ),
        ),
        max_size=12,
    )
)
def test_junk_raises_only_config_error(tmp_path: Path, lines: list[str]) -> None:
    file = tmp_path / "junk.toml"
    file.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        load_config(file, env={"HOME": str(tmp_path)}, cwd=tmp_path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
