"""The program the Flink backends run for each attempt: the attempt's PyFlink client.

    python -m taskfabric_flink._driver --attempt ID --target JSON --conf JSON -- \
        --task-template URI --inputs URI ...

It points PyFlink at the target (`-t local`: a mini-cluster in this process's gateway JVM;
`-m HOST:PORT`: a session cluster) with the attempt's options and job name, then runs the
attempt through the core's `taskfabric-execute`, whose exit code (0 ok, 1 task failed, 2 not
loaded) is the driver's. The gateway's JVM is started only when the task first uses Flink.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from taskfabric_flink._environment import ATTEMPT_ENV, client_environment
from taskfabric_flink._streaming import STREAMING_ENV

#: The line the driver writes first: the backend reads the attempt's job name from it.
STARTED_LINE = "taskfabric-flink: client of attempt "


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="taskfabric_flink._driver")
    parser.add_argument("--attempt", required=True)
    parser.add_argument("--target", required=True, help="JSON list: the flink run target")
    parser.add_argument("--conf", required=True, help="JSON object: the Flink options")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--streaming", default="", help="JSON: where savepoints go, when to stop")
    args, rest = parser.parse_known_args(argv)
    rest = rest[1:] if rest[:1] == ["--"] else rest
    env = client_environment(
        dict(os.environ), json.loads(args.target), json.loads(args.conf), args.attempt, args.python
    )
    os.environ.update(env)
    if args.streaming:
        os.environ[STREAMING_ENV] = args.streaming
    print(f"{STARTED_LINE}{os.environ[ATTEMPT_ENV]}", file=sys.stderr, flush=True)

    from taskfabric.execute import main as execute

    return execute(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
