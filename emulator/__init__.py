"""Emulator of the Tradier and Polygon REST APIs over a simulated market, for tests and `make run`."""
