"""Local stand-ins for the upstream providers, used by development mode and by the tests.

Each speaks its provider's real wire protocol (endpoints, parameters, error bodies, signatures),
so the gateway's production code runs against them unchanged, with only endpoint URLs pointed
here. They are test and demo servers: they keep everything in memory and trust nobody.
"""
