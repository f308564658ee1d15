"""pytest imports test modules by basename (no packages here): two test files with one name in different
folders stop the whole run at collection (CI caught test_join_local and test_lab_check twice)."""

from collections import Counter

from tests.conftest import REPO


def test_every_test_module_name_is_unique():
    names = Counter(p.name for p in (REPO / "tests").rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
