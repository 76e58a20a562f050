"""The hard limits and timeouts of every public listener (SECURITY H7): Tornado's (100 MiB
bodies, no idle timeout) are far above anything a login or a verification needs. Past these the
connection is dropped; the handlers answer 413/431 above their own, lower limits
(handlers/base.py). gateway/server.py gives them to Tornado's HTTPServer, gateway/data_plane.py
applies them itself."""

MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
IDLE_CONNECTION_TIMEOUT = 75.0  # seconds a connection may wait for (the headers of) a request
BODY_TIMEOUT = 15.0  # seconds a request's body may take once its headers are in
