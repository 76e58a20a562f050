"""Development: `mode.py` runs the gateway against local stand-ins for its providers
(`serve --dev`, `config check --dev`); `standins/` holds those stand-ins, which the tests and
the benchmark use too.

Nothing is imported here, so that a stand-in can be loaded without the gateway's server and
configuration (the benchmark runs one in a process of its own).
"""
