# docs/examples/task_settings.py
from datetime import timedelta

from taskfabric import Cache, Resources, Retry, task, workflow


@task(
    retries=Retry(retries=3, backoff=timedelta(seconds=2), multiplier=2.0),
    timeout=timedelta(minutes=5),
    cache=Cache(version="2", ignored_inputs=("verbose",)),
    requests=Resources(cpu="500m", memory="1Gi"),
    limits=Resources(cpu=2, memory="2Gi"),
    pools={"geo-api": 1},
)
def geocode(addresses: list[str], verbose: bool = False) -> list[str]:
    """Look addresses up in a rate-limited service (here: a stand-in)."""
    return [a.strip().title() for a in addresses]


@task(retries=2, timeout=30)  # 2 retries with the default backoff; 30 s per attempt
def count(values: list[str]) -> int:
    return len(values)


@workflow
def geocode_all(addresses: list[str]) -> int:
    return count(values=geocode(addresses=addresses))
