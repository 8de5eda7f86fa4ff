"""aws_emulator refuses a moto whose private internals are not those its SQS patch wraps.

Stand-ins are copies of moto's real modules and classes with one thing taken away, so the
real moto is never changed for other tests.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from moto.sqs import models

from echobase.platform import aws_emulator
from echobase.platform.aws_emulator import SUPPORTED_MOTO, MotoIncompatible, check_moto

ROOT = Path(__file__).resolve().parents[2]


def loader_with_models(**classes: type) -> Any:
    """``importlib.import_module``, except that moto.sqs.models has ``classes`` in place of
    its own."""
    stand_in = ModuleType(models.__name__)
    stand_in.__dict__.update({**vars(models), **classes})

    def load(name: str) -> ModuleType:
        return stand_in if name == models.__name__ else importlib.import_module(name)

    return load


def without(cls: type, name: str) -> type:
    """A copy of ``cls`` with the attribute ``name`` it defines removed."""
    namespace = {k: v for k, v in vars(cls).items() if k not in (name, "__dict__", "__weakref__")}
    return type(cls.__name__, cls.__bases__, namespace)


def test_the_installed_moto_passes_and_leaves_no_trace() -> None:
    queues = list(models.Queue.instances_tracked)  # type: ignore[attr-defined]
    assert aws_emulator.moto_problems() == []
    check_moto()
    assert models.Queue.instances_tracked == queues  # type: ignore[attr-defined]


def test_a_missing_method_is_named_with_the_version_and_the_supported_range() -> None:
    load = loader_with_models(SQSBackend=without(models.SQSBackend, "send_message_batch"))
    with pytest.raises(MotoIncompatible) as raised:
        check_moto(load)
    message = str(raised.value)
    assert f"moto {importlib.metadata.version('moto')} is installed" in message
    assert "moto.sqs.models.SQSBackend.send_message_batch is missing" in message
    assert SUPPORTED_MOTO in message
    assert "send_message is" not in message  # only what is wrong


def test_a_property_that_became_a_plain_attribute_is_refused() -> None:
    class Queue(models.Queue):  # type: ignore[misc]
        __module__ = models.__name__  # moto's model metaclass files classes by module
        messages: list[Any] = []

    problems = aws_emulator.moto_problems(loader_with_models(Queue=Queue))
    assert problems == ["moto.sqs.models.Queue.messages is not a property (found list)"]


def test_missing_instance_state_is_refused() -> None:
    class Queue(models.Queue):  # type: ignore[misc]
        __module__ = models.__name__  # moto's model metaclass files classes by module

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            del self._messages_lock

    problems = aws_emulator.moto_problems(loader_with_models(Queue=Queue))
    assert problems == ["a Queue has no attribute _messages_lock"]


def test_a_module_that_moved_is_refused() -> None:
    def load(name: str) -> ModuleType:
        if name == "moto.moto_server.werkzeug_app":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return importlib.import_module(name)

    problems = aws_emulator.moto_problems(load)
    assert problems == [
        "module moto.moto_server.werkzeug_app cannot be imported "
        "(No module named 'moto.moto_server.werkzeug_app')"
    ]


def test_the_launcher_exits_with_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise MotoIncompatible("moto 9.9 is installed, but ...")

    monkeypatch.setattr(aws_emulator, "patch_sqs", refuse)
    with pytest.raises(SystemExit) as raised:
        aws_emulator.main([])
    assert raised.value.code == "aws_emulator: moto 9.9 is installed, but ..."


def test_pyproject_pins_moto_to_the_supported_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (moto,) = [d for d in dependencies if re.match(r"moto\b", d)]
    assert moto == f"moto[server]{SUPPORTED_MOTO}"
