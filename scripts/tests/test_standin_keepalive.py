"""The stand-in keeps HTTP/1.1 connections open as AWS's endpoints do, and iotinvoke's Client uses
that: several invokes in one process share one TLS connection per endpoint.

Not marked ``tooling``: the Client half is iotinvoke's own behaviour, so it runs with Debian 12's
urllib3 too (urllib3 1.26 and 2.x pool connections differently)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

import iotinvoke as ii
from standin import StandIn
from standin.testclient import TestClient

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9


def test_two_requests_over_one_tls_connection_both_get_answers(aws: StandIn, aws_client: TestClient) -> None:
    connection = aws_client.connect("iot", aws_client.context("device"))
    try:
        replies = [aws_client.send("iot", "GET", "/role-aliases/iotinvoke-alias/credentials",
                                   {"x-amzn-iot-thingname": "edge-0001"}, connection=connection) for _ in range(2)]
    finally:
        connection.close()
    assert [reply.status for reply in replies] == [200, 200]
    assert [reply.header("Connection") for reply in replies] == [None, None]   # no "Connection: close"
    assert aws.count("iot") == 2
    assert aws.connections("iot") == 1


def test_an_idle_connection_is_closed_by_the_stand_in(tmp_path: Path) -> None:
    with StandIn(tmp_path, idle_timeout_s=0.3) as aws:
        client = TestClient(aws)
        connection = client.connect("iot", client.context("device"))
        try:
            reply = client.send("iot", "GET", "/role-aliases/iotinvoke-alias/credentials", connection=connection)
            assert reply.status == 200
            sock = connection.sock
            assert sock is not None
            sock.settimeout(10)   # far beyond the idle timeout: the stand-in must close first
            try:
                assert sock.recv(1) == b""   # end of stream: the server closed the idle connection
            except (ConnectionResetError, socket.timeout) as error:
                pytest.fail(f"expected a clean close of the idle connection, got {error!r}")
        finally:
            connection.close()


def test_client_makes_one_tls_handshake_per_endpoint_for_several_invokes(aws: StandIn) -> None:
    client = ii.Client(ii.load_config(str(aws.config_path), environ={}), use_cache=False)
    before = len(aws.invocations)
    for _ in range(3):
        client.invoke("dev", b'{"test":"test1"}')
    assert len(aws.invocations) - before == 3
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (1, 1, 3)
    assert (aws.connections("iot"), aws.connections("sts"), aws.connections("lambda")) == (1, 1, 1)


def test_a_request_that_cannot_be_framed_ends_its_connection_and_says_so(aws: StandIn, aws_client: TestClient) -> None:
    connection = aws_client.connect("sts")
    try:
        connection.putrequest("POST", "/")
        connection.putheader("Content-Length", "not a number")
        connection.endheaders()
        response = connection.getresponse()
        assert (response.status, response.getheader("Connection")) == (400, "close")
        response.read()
    finally:
        connection.close()
