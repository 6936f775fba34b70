"""Tracing for bench/bench_noop.py and bench/bench_first_deploy.py, loaded into the measured CLI process only.

The bench runs ``technicia-deploy`` with this directory on PYTHONPATH and
``TECHNICIA_BENCH_TRACE=<file>``; Python imports ``sitecustomize`` at start-up, and
this one then appends one JSON line per event to the file:

* ``ssh``: each command sent (``HostConnection._execute``: after the read cache, re-runs after a drop
  included): start, duration, exit status, the command as sent;
* ``connect``: each SSH connection opened (``HostConnection._open``), ``ok`` false when it failed
  (bench_first_deploy.py: the attempts while a rebuilt VPS boots);
* ``http``: each HTTP request that httpx sends (sync and async transports): method, URL, status.
  Prefect's client retries a 503 itself, so every attempt shows.

Without the variable (or outside the bench) it does nothing. Nothing here changes what the
process does: it wraps and calls through. No project code carries a hook for it.
"""

import os

_TRACE = os.environ.get("TECHNICIA_BENCH_TRACE")


def _install(path: str) -> None:
    import json
    import threading
    import time

    lock = threading.Lock()
    out = open(path, "a", buffering=1)

    def write(record: dict) -> None:
        line = json.dumps(record)
        with lock:
            out.write(line + "\n")

    try:
        from technicia_deploy import connection
    except Exception as exc:  # noqa: BLE001 - the bench reports a trace without SSH events
        write({"kind": "hook-error", "what": "technicia_deploy.connection", "error": repr(exc)})
    else:
        cls = connection.HostConnection
        original_open = cls._open
        # The send itself: one command on the wire (wrapped for sudo already), after any read cache and
        # including re-runs after a drop. Older code without it: the public run().
        send_name = "_execute" if hasattr(cls, "_execute") else "run"
        original_send = getattr(cls, send_name)
        if send_name != "_execute":
            write({"kind": "hook-error", "what": "HostConnection._execute missing: tracing run() instead"})

        def send(self, *args, **kwargs):
            started, t0 = time.time(), time.perf_counter()
            status = None
            try:
                result = original_send(self, *args, **kwargs)
                status = getattr(result, "exit_code", None)
                return result
            except Exception as exc:
                status = getattr(exc, "exit_code", type(exc).__name__)
                raise
            finally:
                if send_name == "_execute":  # (conn, full, stdin, timeout)
                    command = args[1] if len(args) > 1 else kwargs.get("full")
                    stdin = args[2] if len(args) > 2 else kwargs.get("stdin")
                else:  # (command, sudo=..., as_user=..., stdin=...)
                    command, stdin = (args[0] if args else kwargs.get("command")), kwargs.get("stdin")
                write({"kind": "ssh", "t0": started, "dur": time.perf_counter() - t0, "exit": status,
                       "host": self.host, "port": self.port, "user": self.user, "stdin": stdin is not None,
                       "command": command})

        def _open(self, *args, **kwargs):
            started, t0, ok = time.time(), time.perf_counter(), False
            try:
                opened = original_open(self, *args, **kwargs)
                ok = True
                return opened
            finally:
                write({"kind": "connect", "t0": started, "dur": time.perf_counter() - t0,
                       "host": self.host, "user": self.user, "ok": ok})

        setattr(cls, send_name, send)
        cls._open = _open

    import httpx

    sync_send = httpx.HTTPTransport.handle_request
    async_send = httpx.AsyncHTTPTransport.handle_async_request

    def record(request, started: float, t0: float, status) -> None:
        write({"kind": "http", "t0": started, "dur": time.perf_counter() - t0, "method": request.method,
               "host": request.url.host, "port": request.url.port, "path": request.url.path, "status": status})

    def handle_request(self, request):
        started, t0, status = time.time(), time.perf_counter(), None
        try:
            response = sync_send(self, request)
            status = response.status_code
            return response
        except Exception as exc:
            status = type(exc).__name__
            raise
        finally:
            record(request, started, t0, status)

    async def handle_async_request(self, request):
        started, t0, status = time.time(), time.perf_counter(), None
        try:
            response = await async_send(self, request)
            status = response.status_code
            return response
        except BaseException as exc:
            status = type(exc).__name__
            raise
        finally:
            record(request, started, t0, status)

    httpx.HTTPTransport.handle_request = handle_request
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request


if _TRACE:
    _install(_TRACE)
