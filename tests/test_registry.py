"""The listener and resolution registries: names, duplicates, configs and look-ups."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

import listeners
import resolutions
from bridge.ledger import governance
from listeners import EventStore, Service, get_listener, register_listener, registered_listeners
from resolutions import (
    ResolutionConfig,
    ResolveContext,
    get_resolution,
    register_resolution,
    registered_resolutions,
    retire_resolution,
    update_resolution,
)

BAD_NAMES: list[Any] = ["Upper", "ALL", "has space", " lead", "trail ", "", "dash-ed", "dot.ted", "é", "a\n"]
NON_STR: list[Any] = [None, 1, b"bytes", ("t",)]


async def _listen(service: Service, store: EventStore) -> None:
    return None


async def _other_listen(service: Service, store: EventStore) -> None:
    return None


async def _resolve(ctx: ResolveContext) -> None:
    return None


# -- listeners -- #


def test_register_listener_plain_call_returns_fn_and_registers() -> None:
    assert register_listener("test_plain_listener", _listen) is _listen
    assert get_listener("test_plain_listener") is _listen
    assert registered_listeners()["test_plain_listener"] is _listen


def test_register_listener_as_decorator() -> None:
    @register_listener("test_decorated_listener")
    async def listen(service: Service, store: EventStore) -> None:
        return None

    assert get_listener("test_decorated_listener") is listen


def test_registered_listeners_is_sorted_copy() -> None:
    register_listener("zz_test_listener", _listen)
    register_listener("aa_test_listener", _other_listen)
    view = registered_listeners()
    assert list(view) == sorted(view)
    assert isinstance(view, dict)
    view.pop("aa_test_listener")
    assert get_listener("aa_test_listener") is _other_listen


@pytest.mark.parametrize("name", BAD_NAMES + NON_STR)
def test_register_listener_rejects_invalid_names(name: Any) -> None:
    before = dict(listeners._registry)
    with pytest.raises(ValueError, match="invalid listener name"):
        register_listener(name, _listen)
    with pytest.raises(ValueError, match="invalid listener name"):
        register_listener(name)
    assert listeners._registry == before


def test_register_listener_rejects_duplicates_plain_and_decorator() -> None:
    register_listener("test_dup_listener", _listen)
    with pytest.raises(ValueError, match="'test_dup_listener' is already registered"):
        register_listener("test_dup_listener", _other_listen)
    with pytest.raises(ValueError, match="already registered"):
        register_listener("test_dup_listener")
    assert get_listener("test_dup_listener") is _listen


def test_register_listener_decorator_rechecks_duplicate_at_decoration() -> None:
    decorate = register_listener("test_late_dup_listener")
    register_listener("test_late_dup_listener", _listen)
    with pytest.raises(ValueError, match="already registered"):
        decorate(_other_listen)
    assert get_listener("test_late_dup_listener") is _listen


def test_get_listener_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError, match="no listener registered as 'no_such_listener'"):
        get_listener("no_such_listener")


# -- resolutions -- #


def test_register_resolution_and_get() -> None:
    config = ResolutionConfig(resolve=_resolve)
    register_resolution("test_plain_resolution", config)
    assert get_resolution("test_plain_resolution") is config
    assert registered_resolutions()["test_plain_resolution"] is config
    names = list(registered_resolutions())
    assert names == sorted(names)


def test_builtin_governance_resolutions_are_registered() -> None:
    assert {governance.JOIN, governance.REMOVE} <= set(registered_resolutions())


@pytest.mark.parametrize("name", BAD_NAMES + NON_STR)
def test_register_resolution_rejects_invalid_names(name: Any) -> None:
    before = dict(resolutions._registry)
    with pytest.raises(ValueError, match="invalid resolution name"):
        register_resolution(name, ResolutionConfig(resolve=_resolve))
    assert resolutions._registry == before


def test_register_resolution_rejects_duplicates() -> None:
    first = ResolutionConfig(resolve=_resolve)
    register_resolution("test_dup_resolution", first)
    with pytest.raises(ValueError, match="'test_dup_resolution' is already registered"):
        register_resolution("test_dup_resolution", ResolutionConfig(resolve=_resolve))
    assert get_resolution("test_dup_resolution") is first


def test_register_resolution_rejects_overriding_builtin() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_resolution("validator_join", ResolutionConfig(resolve=_resolve))


def test_get_resolution_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError, match="no resolution registered as 'no_such_resolution'"):
        get_resolution("no_such_resolution")


def test_a_type_changes_and_retires_at_scheduled_heights() -> None:
    first, second = ResolutionConfig(resolve=_resolve), ResolutionConfig(resolve=_resolve)
    register_resolution("test_sched", first, from_height=10)
    update_resolution("test_sched", second, at_height=20)
    retire_resolution("test_sched", at_height=30)
    for height, expected in ((0, None), (9, None), (10, first), (19, first), (20, second), (29, second)):
        assert registered_resolutions(height).get("test_sched") is expected, height
    for later in (30, 31, None):
        assert "test_sched" not in registered_resolutions(later)
        with pytest.raises(KeyError):
            get_resolution("test_sched", later)
    assert get_resolution("test_sched", 25) is second
    assert resolutions.retired_at(30) == ("test_sched",)
    assert resolutions.retired_at(29) == resolutions.retired_at(31) == ()


def test_scheduled_changes_are_refused_out_of_order() -> None:
    config = ResolutionConfig(resolve=_resolve)
    with pytest.raises(ValueError, match="'test_nothing' is not registered"):
        update_resolution("test_nothing", config, at_height=5)
    with pytest.raises(ValueError, match="'test_nothing' is not registered"):
        retire_resolution("test_nothing", at_height=5)
    register_resolution("test_order", config, from_height=5)
    for height in (5, 4):
        with pytest.raises(ValueError, match="already changes at height 5"):
            update_resolution("test_order", config, at_height=height)
    bad: Any
    for bad in (-1, True, "7", 1.5):
        with pytest.raises(ValueError, match="must be an int >= 0"):
            retire_resolution("test_order", at_height=bad)
    with pytest.raises(ValueError, match="must be an int >= 0"):
        register_resolution("test_bad_start", config, from_height=-3)
    assert "test_bad_start" not in resolutions._registry
    retire_resolution("test_order", at_height=8)
    with pytest.raises(ValueError, match="'test_order' is already retired"):
        update_resolution("test_order", config, at_height=9)
    assert resolutions._registry["test_order"] == ((5, config), (8, None))


def test_resolution_config_defaults() -> None:
    config = ResolutionConfig(resolve=_resolve)
    assert config.confirmation_threshold == Fraction(2, 3)
    assert config.refund_threshold == Fraction(1)
    assert config.expiration_period == 14400


@pytest.mark.parametrize("field", ["confirmation_threshold", "refund_threshold"])
@pytest.mark.parametrize(
    "value", [Fraction(0), Fraction(-1, 3), Fraction(4, 3), Fraction(2), 0.5, 1, "2/3", None]
)
def test_resolution_config_rejects_bad_thresholds(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a Fraction in \\(0, 1\\]"):
        ResolutionConfig(resolve=_resolve, **{field: value})


@pytest.mark.parametrize("value", [Fraction(1, 1000), Fraction(1, 2), Fraction(1)])
def test_resolution_config_accepts_thresholds_in_range(value: Fraction) -> None:
    config = ResolutionConfig(resolve=_resolve, confirmation_threshold=value, refund_threshold=value)
    assert config.confirmation_threshold == value == config.refund_threshold


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", None, True])
def test_resolution_config_rejects_bad_expiration(value: Any) -> None:
    with pytest.raises(ValueError, match="expiration_period must be a positive int"):
        ResolutionConfig(resolve=_resolve, expiration_period=value)


def test_resolution_config_accepts_expiration_of_one() -> None:
    assert ResolutionConfig(resolve=_resolve, expiration_period=1).expiration_period == 1


def test_registry_fixture_isolation_restores_registries() -> None:
    # Registered by earlier tests in this file; the autouse fixture must have restored the registries.
    assert "test_plain_listener" not in listeners._registry
    assert "test_plain_resolution" not in resolutions._registry
