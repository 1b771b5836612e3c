"""Sharing through an S3 remote: push from one clone, pull into another, nothing reruns.

The remote is a real S3-compatible server on loopback (moto's ThreadedMotoServer); the teacher
is the stub server. Credentials are fake and live only in the DVC subprocesses' environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.stub_server import StubServer
from tests.conftest import Project

pytestmark = pytest.mark.slow

BUCKET = "chartdistill-test"
PREFIX = "remote"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Stage outputs that every version of the pipeline has; later stages are checked when present.
EXPECTED_OUTS = {"data/charts", "data/teacher_cache", "data/essays", "data/datasets"}


@pytest.fixture
def s3() -> Iterator[tuple[str, Any]]:
    """A moto S3 server on 127.0.0.1:<free port> with an empty bucket; yields (url, client)."""
    import boto3
    import moto.server as server_mod

    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=BUCKET)  # DVC does not create it
        yield url, client
    finally:
        server.stop()


def _with_remote(project: Project, url: str) -> None:
    project.env.update(CREDENTIALS)
    project.run("dvc", "remote", "add", "-d", "storage", f"s3://{BUCKET}/{PREFIX}")
    project.run("dvc", "remote", "modify", "storage", "endpointurl", url)


def _cached_outs(project: Project) -> dict[str, str]:
    """path -> hash of every output DVC caches (so pushes), as DVC itself resolves dvc.yaml."""
    from dvc.repo import Repo

    with Repo(str(project.root)) as repo:
        return {
            os.path.relpath(out.fs_path, project.root): out.hash_info.value
            for out in repo.index.outs
            if out.use_cache and out.hash_info and out.hash_info.value
        }


def _object_key(md5: str) -> str:
    return f"{PREFIX}/files/md5/{md5[:2]}/{md5[2:]}"


def _remote_keys(client: Any) -> set[str]:
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def _missing_from_remote(client: Any, outs: dict[str, str]) -> list[str]:
    """Every file of every output (directories through their .dir listing) must be remote."""
    keys = _remote_keys(client)
    missing = []
    for path, md5 in outs.items():
        if _object_key(md5) not in keys:
            missing.append(f"{path} ({md5})")
            continue
        if md5.endswith(".dir"):
            body = client.get_object(Bucket=BUCKET, Key=_object_key(md5))["Body"].read()
            for entry in json.loads(body):
                if _object_key(entry["md5"]) not in keys:
                    missing.append(f"{path}/{entry['relpath']} ({entry['md5']})")
    return missing


def test_push_then_pull_into_a_fresh_clone_reruns_nothing(
    tiny_run: Project, session_stub: StubServer, s3: tuple[str, Any], tmp_path: Path
) -> None:
    url, client = s3
    tiny_project, stub = tiny_run, session_stub  # a copy of the session's finished tiny run
    _with_remote(tiny_project, url)
    config = (tiny_project.root / ".dvc/config").read_text()
    assert url in config and "secret" not in config.lower() and "access_key" not in config
    tiny_project.run("dvc", "repro")
    tiny_project.commit("remote configured")
    sent = len(stub.chat_requests)
    assert sent > 0

    tiny_project.run("dvc", "push")
    outs = _cached_outs(tiny_project)
    assert set(outs) >= EXPECTED_OUTS, sorted(outs)
    assert _missing_from_remote(client, outs) == []
    assert "in sync" in tiny_project.run("dvc", "status", "--cloud").stdout

    clone_root = tmp_path / "clone"
    tiny_project.run("git", "clone", "-q", str(tiny_project.root), str(clone_root))
    clone = Project(clone_root)
    clone.env.update(CREDENTIALS)
    assert not any((clone_root / path).exists() for path in outs)
    clone.run("dvc", "pull")
    for path in outs:
        assert (clone_root / path).exists(), path
    essays = "data/essays/essays.jsonl"
    assert (clone_root / essays).read_bytes() == (tiny_project.root / essays).read_bytes()
    status = clone.run("dvc", "status").stdout
    assert "up to date" in status, status
    repro = clone.run("dvc", "repro")
    assert "Data and pipelines are up to date" in repro.stdout, repro.stdout
    assert len(stub.chat_requests) == sent  # the teacher was not asked again
    assert clone.run("git", "status", "--porcelain").stdout == ""
