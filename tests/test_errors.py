"""One exception root: every exception class meterd defines derives from MeterdError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import meterd
from meterd.channels.modbus.service import SessionEndedError
from meterd.errors import ChannelError, MeterdError, PolicyError, SecurityLogError
from meterd.policy.scope import ScopePathError, split_path
from meterd.seclog.codec import FrameError
from meterd.shell.context import UsageError


def _meterd_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(meterd.__path__, "meterd."))


def test_the_walk_sees_the_whole_package() -> None:
    names = _meterd_modules()
    # Deep modules of every area, so a walk that stopped early cannot pass the test below.
    for name in (
        "meterd.seclog.codec",
        "meterd.policy.scope",
        "meterd.channels.modbus.service",
        "meterd.cli",
    ):
        assert name in names


def test_every_meterd_exception_derives_from_meterd_error() -> None:
    outside = []
    for name in _meterd_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException) and not issubclass(cls, MeterdError):
                outside.append(f"{name}.{cls.__qualname__}")
    assert outside == []


def test_value_errors_of_a_family_stay_catchable_as_value_errors() -> None:
    # Decoders and path parsers raised ValueError before they joined a family;
    # callers that catch ValueError keep catching them.
    assert issubclass(FrameError, SecurityLogError)
    assert issubclass(FrameError, ValueError)
    assert issubclass(ScopePathError, PolicyError)
    assert issubclass(ScopePathError, ValueError)
    with pytest.raises(ValueError, match="must start with"):
        split_path("files")


def test_command_and_session_errors_are_channel_errors() -> None:
    assert issubclass(UsageError, ChannelError)
    assert issubclass(SessionEndedError, ChannelError)
