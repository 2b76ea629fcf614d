"""A minimal client of the stand-in for tests: mTLS GETs and botocore-signed requests.

Tests only: it imports botocore (to sign exactly as a real AWS client does), which the stand-in
itself never does. Requests go out with http.client so that the bytes on the wire are under the
test's control (raw paths, altered bodies, missing headers).
"""
from __future__ import annotations

import base64
import http.client
import json
import ssl
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .harness import StandIn

__all__ = ["Creds", "Reply", "TestClient"]

_STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"


@dataclass(frozen=True)
class Creds:
    access_key: str
    secret_key: str
    token: str | None
    expiration: str = ""


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def xml(self, path: str) -> str | None:
        """Text of the first element at ``path`` (namespace prefix 'sts:'), None if absent."""
        root = ElementTree.fromstring(self.body)
        element = root.find(path.replace("sts:", _STS_NS))
        return None if element is None else element.text

    @property
    def error_code(self) -> str | None:
        """The AWS error code: STS's <Code>, or Lambda's x-amzn-ErrorType cut at ':'."""
        if self.body.startswith(b"<"):
            return self.xml("sts:Error/sts:Code")
        error_type = self.header("x-amzn-ErrorType")
        return error_type.split(":", 1)[0] if error_type else None


class TestClient:
    """Talks to one started StandIn."""

    __test__ = False   # not a pytest test class

    def __init__(self, aws: StandIn) -> None:
        self.aws = aws

    # -- transport -------------------------------------------------------------------------------

    def context(self, cert: str | None = None, *, cert_paths: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.aws.ca_path))
        if cert is not None:
            cert_paths = self.aws.certs[cert]
        if cert_paths is not None:
            context.load_cert_chain(str(cert_paths[0]), str(cert_paths[1]))
        return context

    def connect(self, hop: str, context: ssl.SSLContext | None = None, *,
                server_hostname: str | None = None) -> http.client.HTTPSConnection:
        url = urlsplit(self.aws.urls[hop])
        host = url.hostname or "localhost"
        connection = http.client.HTTPSConnection(host, url.port, context=context or self.context(), timeout=10)
        if server_hostname is not None:
            # http.client has no SNI override: connect the socket ourselves with the wanted name.
            import socket
            raw = socket.create_connection((host, url.port), timeout=10)
            connection.sock = (context or self.context()).wrap_socket(raw, server_hostname=server_hostname)
        return connection

    def send(self, hop: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"", *,
             context: ssl.SSLContext | None = None,
             connection: http.client.HTTPSConnection | None = None) -> Reply:
        own = connection is None
        connection = connection or self.connect(hop, context)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            if own:
                connection.close()

    # -- hop 1 -----------------------------------------------------------------------------------

    def iot(self, cert: str = "device", alias: str = "iotinvoke-alias", thing: str | None = "edge-0001", *,
            method: str = "GET", path: str | None = None) -> Reply:
        headers = {"x-amzn-iot-thingname": thing} if thing is not None else {}
        return self.send("iot", method, path or f"/role-aliases/{alias}/credentials", headers,
                         context=self.context(cert))

    def device_creds(self, alias: str = "iotinvoke-alias", thing: str | None = "edge-0001") -> Creds:
        reply = self.iot(alias=alias, thing=thing)
        assert reply.status == 200, reply.body
        body = reply.json()["credentials"]
        return Creds(body["accessKeyId"], body["secretAccessKey"], body["sessionToken"], body["expiration"])

    # -- signed requests -------------------------------------------------------------------------

    def signed(self, hop: str, creds: Creds, method: str, path: str, body: bytes = b"", *,
               headers: dict[str, str] | None = None, region: str = "ap-northeast-1", service: str | None = None,
               tamper: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]] | None = None,
               connection: http.client.HTTPSConnection | None = None) -> Reply:
        """Sign with botocore's SigV4Auth as a real client does, optionally alter, then send."""
        request = AWSRequest(method=method, url=self.aws.urls[hop] + path, data=body, headers=dict(headers or {}))
        SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.token),
                  service or hop, region).add_auth(request)
        prepared = request.prepare()
        wire_headers = {name: value.decode() if isinstance(value, bytes) else value
                        for name, value in prepared.headers.items()}
        wire_body = prepared.body or b""
        if isinstance(wire_body, str):
            wire_body = wire_body.encode()
        if tamper is not None:
            wire_headers, wire_body = tamper(wire_headers, wire_body)
        return self.send(hop, method, path, wire_headers, wire_body, connection=connection)

    # -- hop 2 -----------------------------------------------------------------------------------

    def sts(self, creds: Creds, params: dict[str, str] | None = None, **kwargs: Any) -> Reply:
        form = {"Action": "AssumeRole", "Version": "2011-06-15", **(params or {})}
        body = urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return self.signed("sts", creds, "POST", "/", body, headers=headers, **kwargs)

    def assume(self, creds: Creds, role_arn: str, session: str = "iotinvoke", *,
               tamper: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]] | None = None,
               region: str = "ap-northeast-1", service: str | None = None, **params: str) -> Reply:
        """AssumeRole; keyword arguments other than the signing ones are STS parameters."""
        return self.sts(creds, {"RoleArn": role_arn, "RoleSessionName": session, **params},
                        tamper=tamper, region=region, service=service)

    def role_creds(self, creds: Creds, role_arn: str, **params: str) -> Creds:
        reply = self.assume(creds, role_arn, **params)
        assert reply.status == 200, reply.body
        return Creds(reply.xml("sts:AssumeRoleResult/sts:Credentials/sts:AccessKeyId") or "",
                     reply.xml("sts:AssumeRoleResult/sts:Credentials/sts:SecretAccessKey") or "",
                     reply.xml("sts:AssumeRoleResult/sts:Credentials/sts:SessionToken"),
                     reply.xml("sts:AssumeRoleResult/sts:Credentials/sts:Expiration") or "")

    # -- hop 3 -----------------------------------------------------------------------------------

    def invoke(self, creds: Creds, function: str, payload: bytes | str | Any = b"{}", *,
               qualifier: str | None = None, invocation_type: str | None = None, log_type: str | None = None,
               client_context: dict[str, Any] | str | None = None, region: str = "ap-northeast-1",
               **kwargs: Any) -> Reply:
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        body = payload.encode() if isinstance(payload, str) else payload
        path = f"/2015-03-31/functions/{quote(function, safe='')}/invocations"
        if qualifier is not None:
            path += "?" + urlencode({"Qualifier": qualifier})
        headers: dict[str, str] = {}
        if invocation_type is not None:
            headers["X-Amz-Invocation-Type"] = invocation_type
        if log_type is not None:
            headers["X-Amz-Log-Type"] = log_type
        if client_context is not None:
            headers["X-Amz-Client-Context"] = (client_context if isinstance(client_context, str)
                                               else base64.b64encode(json.dumps(client_context).encode()).decode())
        return self.signed("lambda", creds, "POST", path, body, headers=headers, region=region, **kwargs)
