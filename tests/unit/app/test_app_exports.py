"""The public API of each app package is what its ``__all__`` says, no more, no less."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["app.models", "app.repositories", "app.unit_of_work", "app.services", "app.story"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_members(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(package.__all__) == sorted(public)
    for member in package.__all__:
        assert getattr(package, member) is not None


def test_the_app_unit_of_work_has_slots_and_no_instance_dict() -> None:
    from app.unit_of_work import AppUnitOfWork

    assert "__slots__" in vars(AppUnitOfWork)
    with pytest.raises(AttributeError):
        _ = AppUnitOfWork.__new__(AppUnitOfWork).__dict__
