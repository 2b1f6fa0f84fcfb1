"""Benchmarks that drive the server as its users do (`logsense bench --capacity`, `--search`).

The detection benchmark is `models/bench/` (it replays the product object on labeled data);
these measure the server itself and so live beside it. Nothing the server runs imports them.
"""
