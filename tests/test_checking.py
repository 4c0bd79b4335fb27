"""capigate/checking.py's listing of a request's problems and warnings (``listed``); the
answers and journal entries that use it are tested through a served gateway in
tests/test_hostile_bodies.py."""

from __future__ import annotations

from capigate.checking import LISTED_PER_CODE, listed
from capigate.errors import Problem


def said(code: str, paths: list[str]) -> list[Problem]:
    return [Problem(path, code, "m") for path in paths]


def test_a_usual_list_is_answered_as_it_is() -> None:
    warnings = said("unknown_field", [f"events[0].k{i}" for i in range(LISTED_PER_CODE)])
    assert listed(warnings) is warnings


def test_each_code_is_listed_apart_and_its_rest_counted_where_its_next_one_stood() -> None:
    a = said("unknown_field", [f"events[{i}].data.k" for i in range(100)] * 11)
    b = said("missing_recommended", ["events[7].data.items[0]"] * 1002)
    out = listed([*b[:2], *a, *b[2:]])
    assert [p.code for p in out].count("missing_recommended") == LISTED_PER_CODE
    assert [p.code for p in out].count("unknown_field") == LISTED_PER_CODE
    assert [(p.path, p.code) for p in out if p.code == "not_listed"] == [
        ("events", "not_listed"),  # a's rest, in place of its 1,001st: before b's
        ("events[7].data.items[0]", "not_listed"),
    ]
    assert out[2 + LISTED_PER_CODE].message.startswith("100 more unknown_field warnings under events are not")
    assert out[-1].message.startswith("2 more missing_recommended warnings under events[7].data.items[0] are not")


def test_a_rest_spread_over_the_body_is_counted_in_the_body() -> None:
    problems = said("unknown_field", [f"events[0].k{i}" for i in range(LISTED_PER_CODE)] + ["events[1].k", "pixel"])
    *_, more = listed(problems, "problems")
    assert more == Problem(
        "",
        "not_listed",
        "2 more unknown_field problems in the body are not listed: an answer and its journal entry list "
        "the first 1,000 of each code",
    )
