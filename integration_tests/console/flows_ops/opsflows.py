"""Project "ops": its attempts run in processes of their own (the subprocess backend), whose
output is a log file listed as the attempt's log link."""

from taskfabric import task, workflow


@task
def greet(who: str) -> str:
    print(f"hello, {who}", flush=True)
    return f"hello, {who}"


@workflow
def hello(who: str = "console") -> str:
    return greet(who=who)
