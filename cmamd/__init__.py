"""cmamd: a headless trade copier and multi-account manager for cTrader's Open API."""

__version__ = "0.1.0"
