"""ISO code tables (4217 currencies, 3166-1 alpha-2 countries), built once from pycountry."""

from __future__ import annotations

import pycountry

__all__ = ["COUNTRY_CODES", "COUNTRY_CODE_MEANT", "CURRENCY_CODES"]

CURRENCY_CODES: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)
COUNTRY_CODES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)
# Codes in use that are not alpha-2 country codes (ISO 3166/MA's exceptionally reserved ones,
# and withdrawn ones), with the country code meant: UK is the United Kingdom's in domains
# and the EU, EL Greece's in the EU. No near miss of a two-letter code tells these.
COUNTRY_CODE_MEANT: dict[str, str] = {
    "UK": "GB",
    "EL": "GR",
    "FX": "FR",  # metropolitan France
    "EA": "ES",  # Ceuta, Melilla
    "IC": "ES",  # the Canary Islands
    "AC": "SH",  # Ascension Island
    "TA": "SH",  # Tristan da Cunha
    "DG": "IO",  # Diego Garcia
    "BU": "MM",  # Burma
    "TP": "TL",  # East Timor
    "ZR": "CD",  # Zaire
}
