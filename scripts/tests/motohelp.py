"""What the tests that use moto's server share."""
from __future__ import annotations

from typing import Any

import boto3


def client_in_account(url: str, service: str, account: str, region: str) -> Any:
    """A boto3 client acting in ``account`` on moto's server while its auth is still off: moto
    picks the account from the x-moto-account-id header (moto/core/responses.py)."""
    client = boto3.client(service, endpoint_url=url, region_name=region,
                          aws_access_key_id="AKIASETUPSETUPSETUP0", aws_secret_access_key="setup")

    def in_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    client.meta.events.register("before-sign", in_account)
    return client
