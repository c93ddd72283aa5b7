"""A real S3 API for tests: moto's server on 127.0.0.1, started by the tests themselves.

``endpoint`` (a pytest fixture, one server for the whole run) points s3fs, here and in child
processes, at it through the usual AWS settings; ``bucket`` and ``url`` give each test a fresh
bucket. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from memo._storage._open import forget_stores

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/memo-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/memo-test-aws-credentials",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# Small timeouts and one attempt per request, so unreachable endpoints fail fast in tests.
FAST = {
    "config_kwargs": {"connect_timeout": 1, "read_timeout": 3, "retries": {"total_max_attempts": 1}}
}


def start_server() -> tuple[ThreadedMotoServer, str]:
    """A new moto S3 server on 127.0.0.1 (stop it when done) and its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the server at ``endpoint``."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 that s3fs (here and in child processes) talks to: one
    for the whole run, as fsspec keeps filesystem objects (and their endpoint) across tests."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server, url = start_server()
    saved = {name: os.environ.get(name) for name in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=url)
    try:
        yield url
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def bucket(endpoint: str) -> str:
    """A fresh bucket; the name only (memo's URL is ``s3://<bucket>/cache``)."""
    name = f"memo-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def url(bucket: str) -> str:
    """The cache URL inside a fresh bucket."""
    return f"s3://{bucket}/cache"


@pytest.fixture
def s3_url(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh S3 cache URL (moto), with requests that fail fast."""
    monkeypatch.setenv("MEMO_STORAGE_OPTIONS", json.dumps(FAST))
    forget_stores()
    yield url
    forget_stores()
