"""ISO code tables (4217 currencies, 3166-1 alpha-2 countries), built once from pycountry."""

from __future__ import annotations

import pycountry

__all__ = ["COUNTRY_CODES", "CURRENCY_CODES"]

CURRENCY_CODES: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)
COUNTRY_CODES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)
