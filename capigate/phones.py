"""The forms of a phone number that ``capigate.identity`` returns: Structs of a module of their
own, since the modules mypyc compiles declare none (capigate/native.py)."""

from __future__ import annotations

import msgspec

__all__ = ["HashedPhone", "NormalisedPhone"]


# Structs, not NamedTuples: made for every phone of every event, and a NamedTuple costs
# three times as much to build.
class NormalisedPhone(msgspec.Struct, frozen=True, gc=False):
    """A phone number as AppLovin and AppsFlyer hash it: ``digits`` is the country code and
    the national number, no ``+`` (``16505551212``)."""

    digits: str
    possible: bool  # its length is possible for its country (True when it cannot be told)
    with_country_code: bool  # False: no country code was known, the digits are as sent
    # True: sent in international form with its country's trunk prefix after the country code
    # (+44 07700 900123), which ``digits`` leave out (447700900123)
    trunk_prefix_removed: bool = False


class HashedPhone(msgspec.Struct, frozen=True, gc=False):
    digest: str
    possible: bool
    with_country_code: bool
    trunk_prefix_removed: bool = False
