"""Project "bank": names a token of "shop" must never see."""

from taskfabric import task, workflow


@task
def secret_ledger_entry(amount: int) -> int:
    return amount


@workflow
def secret_ledger(amount: int) -> int:
    return secret_ledger_entry(amount=amount)
