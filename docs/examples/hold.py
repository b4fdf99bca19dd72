# docs/examples/hold.py
import time

import taskfabric
from taskfabric import map_task, task, workflow


def lookup(address: str) -> str:
    """Stand-in for a call to a rate-limited geocoding service."""
    return address.upper()


@task
def geocode_batch(addresses: list[str]) -> list[str]:
    found = []
    for address in addresses:
        # one slot of geo-api per call, taken from the engine that runs this task and
        # shared fairly with every other task and engine that uses the pool
        with taskfabric.hold("geo-api", timeout=60) as lease:
            time.sleep(lease.take_tokens(0))  # 0 unless the service asked everyone to wait
            found.append(lookup(address))
    return found


@task
def batches(n: int, size: int) -> list[list[str]]:
    streets = [f"{i} main st" for i in range(n)]
    return [streets[i : i + size] for i in range(0, n, size)]


@workflow
def geocode_all(n: int = 12, size: int = 4) -> list[list[str]]:
    return map_task(geocode_batch)(addresses=batches(n=n, size=size))
