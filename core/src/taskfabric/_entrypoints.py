"""The entry-point groups through which installed distributions extend taskfabric. Here, in
the foundation, so the command line can read its plugins' commands without importing the
plugin system; `taskfabric.plugin_api` exports them to plugin authors."""

#: Backend drivers (Backend subclasses), named as in `driver = "..."`.
BACKENDS_GROUP = "taskfabric.backends"
#: Blob store drivers (BlobStore subclasses), named by URI scheme.
STORAGE_GROUP = "taskfabric.storage"
#: Hook modules (see taskfabric.hookspecs).
HOOKS_GROUP = "taskfabric.hooks"
#: Commands of the `taskfabric` command line (click commands or groups), named as typed.
COMMANDS_GROUP = "taskfabric.commands"
