"""The one ``inherits:`` resolver shared by run-file templates and suites evaluators."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trialrun.errors import ConfigError
from trialrun.inherits import deep_merge, inheritance_chain, merge_chain


def _chain(sections: dict[str, Any], name: Any, **kwargs: Any) -> list[str]:
    kwargs = {"noun": "evaluator", "path": "evaluators", "file": "suites.yaml", **kwargs}
    return inheritance_chain(sections, name, **kwargs)


def _error(sections: dict[str, Any], name: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _chain(sections, name, **kwargs)
    return info.value


# --------------------------------------------------------------------------- chains


def test_chain_runs_from_the_root_ancestor_down() -> None:
    sections = {
        "root": {"interval": 1},
        "mid": {"inherits": "root"},
        "leaf": {"inherits": "mid"},
        "other": {},
    }
    assert _chain(sections, "leaf") == ["root", "mid", "leaf"]
    assert _chain(sections, "mid") == ["root", "mid"]
    assert _chain(sections, "root") == ["root"]
    assert _chain(sections, "other") == ["other"]
    # ``inherits: null`` is the same as no parent.
    assert _chain({"a": {"inherits": None}}, "a") == ["a"]


def test_cycle_names_the_loop_and_the_closing_link() -> None:
    err = _error({"a": {"inherits": "b"}, "b": {"inherits": "a"}}, "a")
    assert str(err) == "suites.yaml: field 'evaluators.b.inherits': evaluator inheritance cycle: a -> b -> a"
    assert (err.file, err.field, err.message) == (
        "suites.yaml",
        "evaluators.b.inherits",
        "evaluator inheritance cycle: a -> b -> a",
    )
    err = _error({"x": {"inherits": "x"}}, "x")
    assert str(err) == "suites.yaml: field 'evaluators.x.inherits': evaluator inheritance cycle: x -> x"
    # A cycle further up the chain than the start.
    sections = {"a": {"inherits": "b"}, "b": {"inherits": "c"}, "c": {"inherits": "b"}}
    assert _error(sections, "a").message == "evaluator inheritance cycle: a -> b -> c -> b"
    assert _error(sections, "a").field == "evaluators.c.inherits"


def test_unknown_parent_names_the_chain_and_the_known_sections() -> None:
    sections = {"base": {"inherits": "missing"}, "child": {"inherits": "base"}}
    err = _error(sections, "child")
    assert str(err) == (
        "suites.yaml: field 'evaluators.base.inherits': evaluator 'base' inherits from 'missing', which "
        "is not defined (inheritance chain: child -> base -> missing); evaluators: base, child"
    )


def test_unknown_start_name_and_non_string_links() -> None:
    templates = {"short": {}, "long": {"inherits": "short"}}
    kwargs = {"noun": "template", "path": "templates", "file": "run.yaml"}
    err = _error(templates, "nope", referenced_at="jobs.0.inherits", **kwargs)
    assert str(err) == "run.yaml: field 'jobs.0.inherits': unknown template 'nope'; templates: short, long"
    err = _error({}, "nope", referenced_at="jobs.0.inherits", **kwargs)
    assert err.message == "unknown template 'nope'; templates: (none defined)"
    err = _error(templates, 3, referenced_at="jobs.1.inherits", **kwargs)
    assert str(err) == (
        "run.yaml: field 'jobs.1.inherits': must be the name of a template, not 3; templates: short, long"
    )
    err = _error({"a": {"inherits": ["b"]}, "b": {}}, "a")
    assert str(err) == (
        "suites.yaml: field 'evaluators.a.inherits': must be the name of an evaluator, not ['b']; "
        "evaluators: a, b"
    )


def test_referenced_at_reports_every_link_error_at_the_reference() -> None:
    # A run file names the job whose ``inherits:`` could not be resolved.
    templates = {"long": {"inherits": "base"}, "base": {"inherits": "long"}}
    kwargs = {"noun": "template", "path": "templates", "file": "run.yaml"}
    err = _error(templates, "long", referenced_at="jobs.0.inherits", **kwargs)
    assert str(err) == "run.yaml: field 'jobs.0.inherits': template inheritance cycle: long -> base -> long"
    err = _error({"long": {"inherits": "gone"}}, "long", referenced_at="jobs.2.inherits", **kwargs)
    assert str(err) == (
        "run.yaml: field 'jobs.2.inherits': template 'long' inherits from 'gone', which is not defined "
        "(inheritance chain: long -> gone); templates: long"
    )


def test_a_section_that_is_not_a_mapping() -> None:
    err = _error({"a": {"inherits": "b"}, "b": [1, 2]}, "a", referenced_at="jobs.0.inherits")
    assert str(err) == "suites.yaml: field 'evaluators.b': must be a mapping"


# --------------------------------------------------------------------------- merging


def test_merge_chain_root_first_child_wins_lists_replaced() -> None:
    sections = {
        "root": {"interval": 4, "video": {"episodes": 2, "cameras": ["a"]}, "jobs": [1, 2]},
        "mid": {"inherits": "root", "interval": 6, "video": {"fps": 10}},
        "leaf": {"inherits": "mid", "video": {"cameras": ["b"]}, "jobs": [3]},
    }
    merged = merge_chain(sections, _chain(sections, "leaf"))
    assert merged == {
        "interval": 6,
        "video": {"episodes": 2, "cameras": ["b"], "fps": 10},
        "jobs": [3],
    }
    assert list(merged) == ["interval", "video", "jobs"]  # root's key order first
    assert merge_chain(sections, []) == {}
    assert merge_chain(sections, [], base={"x": 1}) == {"x": 1}
    # ``base`` goes under the whole chain.
    assert merge_chain(sections, ["root"], base={"interval": 1, "seed": 3}) == {
        "interval": 4,
        "seed": 3,
        "video": {"episodes": 2, "cameras": ["a"]},
        "jobs": [1, 2],
    }


def test_siblings_share_no_mutable_object_with_each_other_or_the_parent() -> None:
    sections = {
        "base": {"video": {"cameras": ["a"]}, "job_overrides": {"n": 1}, "jobs": [{"name": "j"}]},
        "x": {"inherits": "base"},
        "y": {"inherits": "base", "job_overrides": {"m": 2}},
    }
    before = copy.deepcopy(sections)
    base = {"defaults": {"k": [1]}}
    x = merge_chain(sections, _chain(sections, "x"), base=base)
    y = merge_chain(sections, _chain(sections, "y"), base=base)
    x["video"]["cameras"].append("b")
    x["job_overrides"]["n"] = 9
    x["jobs"][0]["name"] = "renamed"
    x["defaults"]["k"].append(2)
    assert y == {
        "defaults": {"k": [1]},
        "video": {"cameras": ["a"]},
        "job_overrides": {"n": 1, "m": 2},
        "jobs": [{"name": "j"}],
    }
    assert sections == before and base == {"defaults": {"k": [1]}}


def test_deep_merge_copies_and_replaces_lists() -> None:
    base = {"a": {"b": [1], "c": {"d": 1}}, "e": [1, 2], "f": {"g": 1}}
    override = {"a": {"c": {"h": 2}}, "e": [3], "f": 5, "i": {"j": [4]}}
    merged = deep_merge(base, override)
    assert merged == {"a": {"b": [1], "c": {"d": 1, "h": 2}}, "e": [3], "f": 5, "i": {"j": [4]}}
    merged["a"]["b"].append(9)
    merged["i"]["j"].append(9)
    merged["e"].append(9)
    assert base == {"a": {"b": [1], "c": {"d": 1}}, "e": [1, 2], "f": {"g": 1}}
    assert override == {"a": {"c": {"h": 2}}, "e": [3], "f": 5, "i": {"j": [4]}}
    # A mapping replaces a scalar and a scalar a mapping; None is a value like any other.
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": None}) == {"a": None}
