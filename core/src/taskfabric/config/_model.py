"""The shape of the config file: one pydantic model per section.

Every model forbids unknown keys and validates strictly (``parallelism = "8"`` is an error, not an
8): TOML values already carry their types, so a mismatch is a mistake worth reporting. Relative
paths are resolved against the config file's folder when validation is given a ``base_dir`` in its
context, which ``load_config`` does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["console", "json"]

#: Task types every config knows; ``[task_types]`` in a file adds to these or overrides them.
DEFAULT_TASK_TYPES: dict[str, str] = {"python": "local"}

APP_NAME = "taskfabric"


def _context(info: ValidationInfo) -> dict[str, object]:
    return info.context if isinstance(info.context, dict) else {}


def _from_file(info: ValidationInfo) -> bool:
    return _context(info).get("from_file") is True


def _resolve_path(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    base_dir = _context(info).get("base_dir")
    if not value.is_absolute() and isinstance(base_dir, Path):
        value = base_dir / value
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProjectConfig(_Section):
    """``[project]``: the project and domain new executions belong to unless told otherwise."""

    name: str = Field(default="default", min_length=1)
    domain: str = Field(default="development", min_length=1)


#: A URI's scheme: ``s3://bucket/prefix`` names a blob store, not a folder.
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def uri_scheme(text: str) -> str | None:
    """The scheme of a URI (``s3`` of ``s3://bucket/prefix``), lower-cased; None for a path."""
    match = _URI_SCHEME.match(text)
    return match.group(1).lower() if match else None


class StorageConfig(_Section):
    """``[storage]``: where blobs live."""

    data_root: Path | None = Field(default=None, strict=False)
    """Folder of the local blob store and the default SQLite database; ``~`` is expanded and a
    relative path is taken from the config file's folder. Unset: the user data folder. A URI
    (``data_root = "s3://bucket/prefix"``) is short for ``blob_root`` with this unset."""
    blob_root: str | None = None
    """URI of the blob store (``s3://bucket/prefix``): every input, output, file, dataframe, log
    and code bundle lives there, found by the ``taskfabric.storage`` driver of its scheme.
    Unset: ``<data_root>/blobs``, a local folder."""
    options: dict[str, str | int | float | bool] = {}
    """Settings of the blob store's driver (the ``s3`` driver's ``endpoint_url``, ...)."""
    durable: bool = False
    """fsync every blob before it is renamed into place (slower; survives power loss)."""

    @model_validator(mode="before")
    @classmethod
    def _uri_data_root(cls, data: Any) -> Any:
        """``data_root = "s3://..."`` sets ``blob_root``; ``file://`` URIs are folders."""
        if not isinstance(data, dict):
            return data
        root = data.get("data_root")
        if not isinstance(root, str):
            return data
        scheme = uri_scheme(root)
        if scheme == "file":
            return {**data, "data_root": root[len("file://") :]}
        if scheme is None:
            return data
        blob_root = data.get("blob_root")
        if blob_root is not None and blob_root != root:
            raise ValueError(
                f"data_root is the URI {root!r} and blob_root is {blob_root!r}: set one of them "
                "(blob_root for the blob store, data_root for the local folder)"
            )
        rest = {key: value for key, value in data.items() if key != "data_root"}
        return {**rest, "blob_root": root}

    @field_validator("data_root")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_path(value, info)

    @field_validator("blob_root")
    @classmethod
    def _check_blob_root(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = uri_scheme(value)
        if scheme is None:
            raise ValueError(
                f"{value!r} is not a URI: write scheme://..., e.g. 's3://bucket/prefix' (for a "
                "local folder set data_root instead)"
            )
        if scheme != "file" and not value[len(scheme) + 3 :].strip("/"):
            raise ValueError(f"{value!r} names no bucket or host: e.g. 's3://bucket/prefix'")
        return value


class MetadataConfig(_Section):
    """``[metadata]``: the metadata database."""

    url: str | None = None
    """A SQLAlchemy URL. Unset: ``sqlite:///<data_root>/taskfabric.db``. A relative SQLite path is
    taken from the config file's folder."""
    pool_size: int | None = Field(default=None, ge=1)
    """On PostgreSQL, the most connections each process holds. Unset: 8 for a server's own
    process (API, scheduler) and a command, ``2 + executions_per_worker / 4`` (rounded up) for
    an engine process of a server. See docs/server.md, "Database connections"."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # Imported here: loading a config (every command, `--help` too) needs no SQLAlchemy
        # unless a database URL is written in it.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as error:
            raise ValueError(f"not a valid SQLAlchemy URL ({error})") from None
        database = url.database
        if url.get_backend_name() == "sqlite" and database and database != ":memory:":
            resolved = _resolve_path(Path(database), info)
            if resolved is not None and not database.startswith("file:"):
                return url.set(database=str(resolved)).render_as_string(hide_password=False)
        return value


class EngineConfig(_Section):
    """``[engine]``: how executions run."""

    parallelism: int = Field(default=8, ge=1)
    """Most nodes of one execution running at once."""
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    """How often a running execution records that it is alive."""
    commit_seconds: float = Field(default=0.05, ge=0)
    """The longest a recorded transition waits for its transaction when no attempt is handed
    to a backend after it (everything recorded is committed before an attempt is handed
    over): the transitions of loop turns that start no attempt are committed together.
    0: a commit every turn."""
    max_output_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """The largest outputs document a task may leave (its outputs as stored, before they are
    read back): an attempt whose outputs are larger fails with ``OutputsTooLarge`` without
    the engine reading them, so a task's return value cannot exhaust the engine's memory.
    Large data travels as a ``File``, ``Directory`` or ``DataFrame`` (a blob)."""
    hold_listen: str | None = None
    """``host:port`` where the engine also offers the pool channel of ``taskfabric.hold()``
    over TCP, for tasks that run away from its host (an ``aws-batch`` job, a pod on another
    node); port 0 takes a free one. Unset (the default): no port is opened."""
    hold_advertise: str | None = None
    """``host`` or ``host:port`` that those tasks dial to reach ``hold_listen`` (the engine
    host's name or address on their network). Unset: ``hold_listen`` itself."""

    @field_validator("hold_listen", "hold_advertise")
    @classmethod
    def _check_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if info.field_name == "hold_advertise" and (not host or not port.isdigit()):
            host, port = value, ""  # a host alone: the listening port is advertised
        bare = host.removeprefix("[").removesuffix("]")
        if (
            not bare
            or (port and not (port.isdigit() and int(port) <= 65535))
            or (":" in bare and not host.startswith("["))
        ):
            example = "0.0.0.0:7710" if info.field_name == "hold_listen" else "engine-1.internal"
            raise ValueError(
                f"not a host:port address: {value!r}; e.g. {example!r} "
                "(an IPv6 address in brackets: '[::]:7710')"
            )
        return value

    @model_validator(mode="after")
    def _check_hold_address(self) -> EngineConfig:
        if self.hold_advertise is not None and self.hold_listen is None:
            raise ValueError(
                "hold_advertise is set without hold_listen: set hold_listen to the host:port "
                'the engine listens on, e.g. hold_listen = "0.0.0.0:7710"'
            )
        listen_host = (self.hold_listen or "").rpartition(":")[0].strip("[]")
        wildcard = listen_host in ("", "0.0.0.0", "::")
        if self.hold_listen is not None and self.hold_advertise is None and wildcard:
            raise ValueError(
                f"hold_listen = {self.hold_listen!r} listens on every interface: set "
                "hold_advertise to the host (or host:port) that tasks dial to reach it, "
                'e.g. hold_advertise = "engine-1.internal"'
            )
        return self


class LoggingConfig(_Section):
    """``[logging]``: what is logged and where."""

    level: LogLevel = "warning"
    format: LogFormat = "console"
    file: Path | None = Field(default=None, strict=False)
    """Also write every line to this file, always as JSON. Empty or unset: no file."""

    @field_validator("file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("file")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_path(value, info)


class BackendConfig(_Section):
    """``[backends.<name>]``: a named backend instance.

    ``driver`` picks the backend plugin; every other key of the table is kept, unvalidated, in
    ``options`` for that plugin's own model (see ``validate_backend_options``).
    """

    driver: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_options(cls, data: object, info: ValidationInfo) -> object:
        # In a file every key but ``driver`` is an option; from Python, ``options=`` is explicit.
        if not (_from_file(info) and isinstance(data, dict)):
            return data
        collected = {key: value for key, value in data.items() if key != "driver"}
        return {**({"driver": data["driver"]} if "driver" in data else {}), "options": collected}


_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}\Z")
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]


class PoolConfig(_Section):
    """``[pools.<name>]``: a resource pool that tasks ask for with ``@task(pools={name: n})``."""

    slots: int = Field(ge=1)
    """How many slots may be held at once (a request may weigh several)."""
    rate: float | None = Field(default=None, gt=0)
    """Grants per ``per`` (a request of weight n takes n), as a token bucket. Unset: no limit."""
    per: Literal["second", "minute"] = "second"
    burst: int | None = Field(default=None, ge=1)
    """The token bucket's size: grants allowed at once after a quiet spell. Unset: ``slots``."""
    lease_ttl: float = Field(default=30.0, gt=0)
    """Seconds a lease lives unless its holder renews it; a dead holder's slots come back then."""
    project_caps: dict[str, PositiveInt] = Field(default_factory=dict)
    """Most slots one project may hold; the key ``"*"`` is the cap of every other project."""
    domain_caps: dict[str, PositiveInt] = Field(default_factory=dict)
    """Most slots one domain may hold; the key ``"*"`` is the cap of every other domain."""
    project_weights: dict[str, PositiveFloat] = Field(default_factory=dict)
    """Fair-share weight of a project (default 1; ``"*"`` sets the default)."""

    @field_validator("per")
    @classmethod
    def _per_needs_rate(cls, value: str, info: ValidationInfo) -> str:
        # "rate" is missing from info.data when it failed validation itself: say nothing more
        if "rate" in info.data and info.data["rate"] is None:
            raise ValueError("per is set but rate is not; add rate or remove per")
        return value

    @property
    def rate_per_second(self) -> float | None:
        if self.rate is None:
            return None
        return self.rate / 60.0 if self.per == "minute" else self.rate


class ServerConfig(_Section):
    """``[server]``: the control plane server (``taskfabric server``), and the server the command
    line talks to (``url``)."""

    host: str = Field(default="127.0.0.1", min_length=1)
    """Address ``taskfabric server`` listens on."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port ``taskfabric server`` listens on (0: any free port, logged at start)."""
    workers: int = Field(default=2, ge=0)
    """Engine processes running executions at once (0: the server runs none; other servers
    or ``WorkerPool``s on the same database do)."""
    executions_per_worker: int = Field(default=8, ge=1)
    """Executions one engine process runs at once, when the server isolates code (not
    ``single_tenant``): ``workers`` long-lived processes then share their connections and
    threads. A single-tenant server runs each execution in a process of its own (a process
    that imports registered code holds one version of it), as does ``1``."""
    auth: bool = True
    """Require an API token on every request. Turn off only for a single user on one host."""
    single_tenant: bool = False
    """Every project's code is trusted: the server may run registered code on backends that do
    not isolate it (``local``, ``subprocess``), inside or beside its workers, with the server's
    credentials and every project's data within reach. Unset, it runs registered code only on
    isolating backends (``sandbox``, containers) and never imports it itself."""
    scheduler: bool = True
    """Launch the active launch plans' schedules (one or more servers may run it at once)."""
    url: str | None = None
    """The server the command line talks to, e.g. ``"http://ci.example:8080"``. Unset: the
    command line uses this config's own database and blob store."""
    token_file: Path | None = Field(default=None, strict=False)
    """A file holding the API token for ``url`` (``$TASKFABRIC_TOKEN`` wins over it)."""
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """The largest request body the server reads, but for uploads and registrations (413)."""
    max_upload_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)
    """The largest upload of a file or directory for a launch's inputs (413)."""
    max_package_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    """The largest registration package (code bundle and templates) (413)."""
    max_input_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    """The largest total size of a launch's inputs, as stored (413)."""
    max_value_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """The largest stored inputs or outputs document the API and the console read to answer
    a request (413 over it, without reading it)."""
    max_input_string_length: int = Field(default=1_000_000, ge=1)
    """The most characters of one string inside a launch's inputs (413)."""
    max_input_items: int = Field(default=100_000, ge=1)
    """The most items of one list or map inside a launch's inputs (413)."""
    ssl_certfile: Path | None = Field(default=None, strict=False)
    """A PEM certificate (chain) file: ``taskfabric server`` then serves HTTPS only."""
    ssl_keyfile: Path | None = Field(default=None, strict=False)
    """The PEM private key of ``ssl_certfile`` (unset: the key is in ``ssl_certfile``)."""
    ca_file: Path | None = Field(default=None, strict=False)
    """A PEM file of the certificates the command line trusts for an ``https://`` ``url``
    (e.g. a self-signed server's certificate); unset: the system's."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("give an http:// or https:// URL, e.g. http://127.0.0.1:8080")
        return None if value is None else value.rstrip("/")

    @field_validator("token_file", "ssl_certfile", "ssl_keyfile", "ca_file")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_path(value, info)

    @model_validator(mode="after")
    def _check_tls(self) -> ServerConfig:
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set without ssl_certfile: set both, or neither")
        return self


class ProjectOverrides(_Section):
    """``[projects.<name>]``: settings that apply to one project's executions only."""

    task_types: dict[str, str] = Field(default_factory=dict)
    """Task type -> backend name, over the top-level ``[task_types]``."""
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    """Backends defined or redefined for this project (a whole table replaces the top-level one)."""
    cluster: str | None = None
    """Cluster label of the project's executions, for backends with several targets."""
    pool_caps: dict[str, PositiveInt] = Field(default_factory=dict)
    """Pool name -> most slots this project may hold in it (the same as the pool's
    ``project_caps``; a pool must not set both for one project)."""


class Config(_Section):
    """The whole config file. Every section is optional; ``Config()`` is the embedded default."""

    project: ProjectConfig = Field(default_factory=ProjectConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    metadata: MetadataConfig = Field(default_factory=MetadataConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    task_types: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TASK_TYPES))
    """Task type -> backend name. Merged over the defaults (``python = "local"``)."""
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    projects: dict[str, ProjectOverrides] = Field(default_factory=dict)
    """Per-project overrides, e.g. ``[projects.ml.task_types]`` or ``[projects.ml.backends.x]``."""
    pools: dict[str, PoolConfig] = Field(default_factory=dict)
    """Resource pools by name (see ``taskfabric.pools``)."""

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_pools(self) -> Config:
        """Pool names are valid, and ``[projects.<p>] pool_caps`` name pools that exist."""
        problems = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "pool_name",
                    "not a valid pool name: use letters, digits, '_', '.', ':' and '-', "
                    "starting with a letter or digit, at most 255 characters",
                ),
                loc=("pools", name),
                input=name,
            )
            for name in self.pools
            if not _POOL_NAME.match(name)
        ]
        for project, override in self.projects.items():
            for pool, cap in override.pool_caps.items():
                loc = ("projects", project, "pool_caps", pool)
                found = self.pools.get(pool)
                if found is None:
                    known = ", ".join(sorted(self.pools)) or "none"
                    message = "no pool named {pool} in [pools] (defined: {known})"
                    context = {"pool": repr(pool), "known": known}
                elif project in found.project_caps:
                    message = "also set as [pools.{pool}] project_caps.{project}; keep one"
                    context = {"pool": pool, "project": project}
                else:
                    continue
                problems.append(
                    InitErrorDetails(
                        type=PydanticCustomError("pool_caps", message, context), loc=loc, input=cap
                    )
                )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    @field_validator("task_types")
    @classmethod
    def _merge_default_task_types(cls, value: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_TASK_TYPES, **value}

    @property
    def source(self) -> Path | None:
        """The file this config was read from; ``None`` for the embedded defaults."""
        return self._source

    @property
    def data_root(self) -> Path:
        """The resolved, absolute data root."""
        if self.storage.data_root is None:
            return Path(platformdirs.user_data_dir(APP_NAME))
        return self.storage.data_root.expanduser().absolute()

    @property
    def blob_root(self) -> str:
        """The URI of the blob store: ``[storage] blob_root``, else ``<data_root>/blobs``."""
        if self.storage.blob_root is not None:
            return self.storage.blob_root
        return (self.data_root / "blobs").as_uri()

    @property
    def metadata_url(self) -> str:
        """The resolved SQLAlchemy URL of the metadata database."""
        if self.metadata.url is not None:
            return self.metadata.url
        return f"sqlite:///{self.data_root / 'taskfabric.db'}"

    @property
    def log_file(self) -> Path | None:
        """The resolved JSON log file, if any."""
        return self.logging.file

    def backend(self, name: str) -> BackendConfig:
        """The config of backend ``name``.

        A name with no ``[backends.<name>]`` table stands for the driver of that name with no
        options, so ``python = "local"`` needs no table.
        """
        found = self.backends.get(name)
        return found if found is not None else BackendConfig(driver=name)

    def for_project(self, project: str) -> Config:
        """This config with ``[projects.<project>]`` applied (itself if there is none)."""
        override = self.projects.get(project)
        if override is None:
            return self
        merged = self.model_copy(
            update={
                "task_types": {**self.task_types, **override.task_types},
                "backends": {**self.backends, **override.backends},
            }
        )
        merged._source = self._source
        return merged

    def backend_for_task_type(self, task_type: str) -> tuple[str, BackendConfig] | None:
        """The backend name and config that run ``task_type``; ``None`` when none is mapped."""
        name = self.task_types.get(task_type)
        return None if name is None else (name, self.backend(name))
