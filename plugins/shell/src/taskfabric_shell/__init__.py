"""taskfabric-shell: typed taskfabric tasks whose body is a shell script.

```python
from taskfabric import File, task
from taskfabric_shell import Shell

@task(config=Shell(script="wc -l < {inputs.src} > {outputs.o0}"))
def count_lines(src: File) -> int: ...
```

The function's signature is the task's typed interface; its body is never run. See
docs/plugins/shell.md.
"""

from taskfabric_shell._config import Shell
from taskfabric_shell._task_type import (
    ShellError,
    ShellOutputError,
    ShellScriptError,
    ShellTaskType,
)
from taskfabric_shell._template import TemplateError

__version__ = "0.1.0"

__all__ = [
    "Shell",
    "ShellError",
    "ShellOutputError",
    "ShellScriptError",
    "ShellTaskType",
    "TemplateError",
    "__version__",
]
