"""Profiles, layered configuration, key=value overrides and their errors."""

from __future__ import annotations

import pytest

from bayesnas_book.config import (
    PROFILES,
    ConfigError,
    RunConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    profile_from_env,
    profile_path,
)


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_and_validates(name: str) -> None:
    config = load_config(name)
    assert config.profile == name
    text = profile_path(name).read_text()
    assert text.startswith(f"# bayesnas-book search --profile {name}"), "a config file opens with its command"


def test_profiles_differ_where_the_protocol_does() -> None:
    quick, paper = load_config("quick"), load_config("paper")
    assert (quick.device, quick.deterministic, quick.data.dataset) == ("cpu", True, "digits")
    assert (paper.device, paper.deterministic, paper.data.dataset) == ("auto", False, "cifar10")


def test_profile_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert profile_from_env() == "quick"
    monkeypatch.setenv("BAYESNAS_PROFILE", "paper")
    assert load_config().profile == "paper"
    monkeypatch.setenv("BAYESNAS_PROFILE", "fast")
    with pytest.raises(ConfigError, match="BAYESNAS_PROFILE='fast' is not a profile; set it to one of quick, paper"):
        profile_from_env()


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'huge'; choose one of quick, paper"):
        load_config("huge")


def test_overrides_are_typed() -> None:
    config = load_config("quick", overrides=["data.batch_size=32", "seed=7", "data.dataset=mnist", "deterministic=false"])
    assert (config.data.batch_size, config.seed, config.data.dataset, config.deterministic) == (32, 7, "mnist", False)
    config = load_config("quick", overrides=["data.validation_fraction=0.5"])
    assert config.data.validation_fraction == 0.5


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("quick", overrides=["data.batch_size=-3", "data.dataset=svhn", "bogus=1", "seed=abc", "data.root=3"])
    problems = info.value.problems
    assert "`data.batch_size` must be > 0, got -3" in problems
    assert "`data.dataset` must be one of digits, cifar10, mnist, imagenet; got 'svhn'" in problems
    assert any(p.startswith("unknown key `bogus`; valid keys here: profile, seed") for p in problems)
    assert "`seed` must be an integer, got 'abc'" in problems
    assert "`data.root` must be a string, got 3" in problems
    assert len(problems) == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.validation_fraction=1.0", r"`data.validation_fraction` must be strictly between 0 and 1, got 1.0"),
        ("device=gpu", r"`device` must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        ("data.num_workers=-1", r"`data.num_workers` must be >= 0, got -1"),
        ("data=3", r"`data` is a section; give it as a table, got 3"),
        ("data.nope=1", r"unknown key `data.nope`; valid keys here: data.dataset"),
        ("batch_size", r"override 'batch_size' must look like key=value"),
        ("deterministic=maybe", r"`deterministic` must be true or false, got 'maybe'"),
    ],
)
def test_bad_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("quick", overrides=[override])


def test_config_file_layer(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('seed = 3\n[data]\nbatch_size = 16\n')
    config = load_config("paper", config_file=path, overrides=["seed=4"])
    assert (config.seed, config.data.batch_size, config.data.dataset) == (4, 16, "cifar10")


def test_config_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("quick", config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("seed = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config("quick", config_file=broken)


def test_apply_overrides_in_place_and_round_trip() -> None:
    config = RunConfig()
    assert apply_overrides(config, ["data.batch_size=8"]) == []
    assert config_to_dict(config)["data"]["batch_size"] == 8
