"""The aleid / _axeid helpers: read the click id from the query or the cookie, keep it a year."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

from capigate import axeid_set_cookie, axeid_set_cookie_for, read_aleid, read_axwrt
from capigate.client.cookies import AXEID_MAX_AGE_S, parse_cookie_header


def test_aleid_comes_from_the_query_parameter_first() -> None:
    assert read_aleid("utm=x&aleid=click-2", "_axeid=click-1") == "click-2"
    assert read_aleid("?aleid=click-2") == "click-2"
    assert read_aleid({"aleid": "click-2"}, {"_axeid": "click-1"}) == "click-2"
    assert read_aleid({"aleid": ["click-2", "other"]}) == "click-2"  # multi-value mappings


def test_aleid_falls_back_to_the_axeid_cookie() -> None:
    assert read_aleid("utm=x", "session=abc; _axeid=click-1") == "click-1"
    assert read_aleid({}, {"_axeid": "click-1"}) == "click-1"
    assert read_aleid("aleid=", "_axeid=click-1") == "click-1"  # an empty parameter is no click


def test_no_click_id_anywhere_is_none() -> None:
    assert read_aleid("", None) is None
    assert read_aleid({}, "") is None
    assert read_aleid("aleid=%20%20", {"_axeid": ""}) is None


def test_set_cookie_keeps_aleid_for_a_year_on_the_whole_site() -> None:
    header = axeid_set_cookie("click-1")
    assert header == "_axeid=click-1; Max-Age=31536000; Path=/; Secure; SameSite=Lax"
    assert AXEID_MAX_AGE_S == 365 * 24 * 3600
    assert "Domain=.shop.example" in axeid_set_cookie("c", domain=".shop.example")
    assert "Secure" not in axeid_set_cookie("c", secure=False)


def test_cookie_value_survives_characters_cookies_cannot_hold() -> None:
    aleid = "a b;c=d,é"
    header = axeid_set_cookie(aleid)
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)  # a standard parser reads what we wrote
    assert ";" not in jar["_axeid"].value and " " not in jar["_axeid"].value
    assert read_aleid("", f"_axeid={jar['_axeid'].value}") == aleid


def test_set_cookie_only_when_the_request_brings_a_new_click() -> None:
    assert axeid_set_cookie_for("aleid=click-2", "_axeid=click-1") == axeid_set_cookie("click-2")
    assert axeid_set_cookie_for("aleid=click-1", "_axeid=click-1") is None
    assert axeid_set_cookie_for("page=2", "_axeid=click-1") is None


def test_overlong_or_unprintable_values_are_not_click_ids() -> None:
    assert read_aleid("aleid=" + "x" * 600) is None
    assert read_aleid({"aleid": "a\nb"}) is None
    with pytest.raises(ValueError):
        axeid_set_cookie("")


def test_cookie_header_parsing_is_lenient() -> None:
    assert parse_cookie_header('a=1; b="two"; junk; =x; a=3') == {"a": "1", "b": "two"}
    assert read_axwrt("_axwrt=pixel-cookie; _axeid=c") == "pixel-cookie"
    assert read_axwrt(None) is None
