"""`taskfabric server`: the HTTP API, the scheduler and a pool of engine workers in one process.

The API runs on uvicorn in the main thread; the scheduler and the worker pool each run on a
thread of their own. SIGTERM or SIGINT stops the API, then the scheduler, then the workers:
their executions are left RUNNING without an owner (not aborted), and the next server (or
any worker pool on the same database) resumes them without re-running succeeded nodes. A
server killed outright (`kill -9`) loses nothing either: its engine processes get SIGTERM
from the kernel when it dies, and a slot the scheduler launched is recorded only after the
launch, under a name derived from the slot, so a restart neither repeats nor skips one.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from taskfabric.config import Config
from taskfabric.errors import TaskfabricError
from taskfabric.logs import get_logger

log = get_logger("taskfabric.server")


class _ToTaskfabricLogs(logging.Handler):
    """uvicorn logs through the standard library; its lines go to taskfabric's logs."""

    def __init__(self) -> None:
        super().__init__()
        self._log = get_logger("uvicorn")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            error = record.exc_info[1] if record.exc_info else None
            if error is not None and error.__dict__.get("taskfabric_logged"):
                return  # the app logged it already, with the request (`_app._internal_error`)
            if error is not None:
                kind = f"{type(error).__module__}.{type(error).__qualname__}"
                self._log.log(
                    record.levelno,
                    record.getMessage(),
                    error_type=kind.removeprefix("builtins."),
                    exc_info=record.exc_info,
                )
            else:
                self._log.log(record.levelno, record.getMessage())
        except Exception:  # a log line must never take the server down
            self.handleError(record)


def _route_uvicorn_logs() -> None:
    handler = _ToTaskfabricLogs()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [handler] if name == "uvicorn" else []
        logger.propagate = name != "uvicorn"
        logger.setLevel(logging.INFO)


def _thread(name: str, target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _check_tls(certfile: Path, keyfile: Path | None) -> None:
    """Read the certificate and key now: a bad pair ends the command before anything starts."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ValueError) as exc:
        raise TaskfabricError(
            f"cannot use the TLS certificate {certfile} with the key "
            f"{keyfile or '(inside it)'} ([server] ssl_certfile, ssl_keyfile): {exc}"
        ) from None


def _check_required_bounds(config: Config, engine: Any) -> None:
    """Make now each backend that requires bounds a host may not give (the sandbox's
    `cgroups = "required"`): a host without them stops the server here, saying why, instead
    of failing its executions later."""
    for name, backend in config.backends.items():
        if backend.options.get("cgroups") != "required":
            continue
        try:
            engine.backends.named(name)
        except Exception as exc:
            raise TaskfabricError(f"[backends.{name}]: {exc}") from None


def serve(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    scheduler: bool | None = None,
    config_path: Path | None = None,
    scheduler_interval: float = 1.0,
    poll_seconds: float = 0.5,
    extend: Sequence[Callable[[Any], None]] = (),
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run the server until SIGTERM or SIGINT. Arguments left None come from `[server]`.

    Each of `extend` is called with the application before it serves (the command line passes
    `taskfabric.console.mount`, which adds the web console). `on_listening(url)` is called
    once the port is bound (`taskfabric ui` prints its sign-in link).
    """
    import uvicorn

    from taskfabric.engine import Engine, WorkerPool
    from taskfabric.registry import Scheduler
    from taskfabric.server._app import create_app
    from taskfabric.server._service import ControlPlane

    settings = config.server
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    workers = settings.workers if workers is None else workers
    scheduler = settings.scheduler if scheduler is None else scheduler
    if settings.ssl_certfile is not None:
        _check_tls(settings.ssl_certfile, settings.ssl_keyfile)
    # A multi-tenant server never imports registered code and runs it only on backends
    # that isolate it from the server's credentials and other projects' data.
    isolate = not settings.single_tenant
    engine = Engine(config, isolate_code=isolate)
    try:
        _check_required_bounds(config, engine)
    except TaskfabricError:
        engine.close()
        raise
    plane = ControlPlane(config, engine=engine)
    app = create_app(config, plane=plane)
    for add in extend:
        add(app)
    if not plane.auth:
        log.warning("authentication is off ([server] auth = false): whoever connects is admin")
    _route_uvicorn_logs()
    tls = settings.ssl_certfile is not None
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
    )

    # Bound before anything starts: a port in use ends the command (exit code 1) at once.
    sock = uv_config.bind_socket()
    url = f"{'https' if tls else 'http'}://{host}:{sock.getsockname()[1]}"
    log.info(
        "server starting",
        url=url,
        workers=workers,
        scheduler=scheduler,
        auth=plane.auth,
        single_tenant=not isolate,
        executions_per_worker=settings.executions_per_worker if isolate else 1,
        database=plane.metadata.engine.url.render_as_string(hide_password=True),
    )
    if on_listening is not None:
        on_listening(url)
    stop = threading.Event()
    threads = []
    if scheduler:
        sched = Scheduler(plane.registry, plane.launcher())
        threads.append(_thread("scheduler", sched.run_forever, stop, scheduler_interval))
    if workers > 0:
        pool = WorkerPool(
            config,
            workers=workers,
            config_path=config_path or config.source,
            poll_seconds=poll_seconds,
            isolate_code=isolate,
            slots=settings.executions_per_worker if isolate else 1,
            metadata=engine.metadata,
        )
        threads.append(_thread("workers", pool.run_forever, stop))
    server = uvicorn.Server(uv_config)
    # uvicorn re-raises the signal that stopped it once it is done; these handlers take it,
    # so that the workers below are stopped gracefully rather than the process killed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        log.info("server stopping: scheduler and workers")
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        plane.close()
        log.info("server stopped")
