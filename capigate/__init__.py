"""capigate: a self-hosted conversions API gateway for AppLovin Axon and AppsFlyer."""

__version__ = "0.1.0"
