"""montaged: a watch-folder daemon that renders beat-synced preview montages."""

__version__ = "0.1.0"
