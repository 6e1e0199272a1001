"""The `make test` schedule (tests/conftest.py) names real modules and tests: a renamed module
would silently fall back to the end of the queue and make the suite minutes longer."""

from __future__ import annotations

import importlib

from tests import conftest


def test_every_named_work_unit_exists() -> None:
    for unit in (*conftest.STACK_MODULES, *conftest.SPLIT_MODULES, *conftest.LONGEST_FIRST):
        if unit == "stack":
            continue
        module_name, _, test_name = unit.partition("::")
        module = importlib.import_module(module_name)
        if test_name:
            assert callable(getattr(module, test_name, None)), unit
            assert module_name in conftest.SPLIT_MODULES, unit
    assert len(set(conftest.LONGEST_FIRST)) == len(conftest.LONGEST_FIRST)


def test_each_module_is_one_unit_the_stack_modules_share_one_and_split_tests_are_alone() -> None:
    def unit(module: str, test: str) -> str:
        return conftest.work_unit(f"{module.replace('.', '/')}.py::{test}")

    assert {unit(m, "test_x") for m in conftest.STACK_MODULES} == {"stack"}
    assert unit("tests.functions.test_encode", "test_a[x-1]") == unit("tests.functions.test_encode", "test_b")
    assert unit("tests.functions.test_encode", "test_a") == "tests.functions.test_encode"
    split = next(iter(conftest.SPLIT_MODULES))
    assert unit(split, "test_a[1]") == unit(split, "test_a[2]") != unit(split, "test_b")
