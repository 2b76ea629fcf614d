"""The floor under any agent of this protocol: what one call costs with nothing but the libraries.

Usage (scripts/bench --agent-floor runs it):
    python floor_agent.py SOCKET CONFIG ENV urllib3|http.client

It listens on SOCKET and answers iotinvoke's agent protocol (IIA1, see "The agent" in
iotinvoke.py) with the least work an agent can do for one Lambda Invoke: accept, read the
request, sign it with botocore's SigV4Auth, send it on one HTTPS connection kept alive, either
through urllib3's HTTPSConnectionPool.urlopen (iotinvoke's send path) or through Python's own
http.client.HTTPSConnection (no urllib3 at all), and write the answer back. One thread, no peer
check, no bounds, no deadlines, no cache, no configuration reloads, no retries, no error
mapping: none of what iotinvoke promises. An agent that keeps those promises cannot cost less
per call on the same libraries; it is here to measure how far above that floor iotinvoke is.

The credentials are ENV's, asked once at start from `iotinvoke.py --credential-process ENV`
(beside this folder's parent), with the environment's cache folder; they must outlive the run.
The function, Lambda's endpoint and the CA file come from CONFIG (iotinvoke.ini's format).
"""
from __future__ import annotations

import configparser
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

MAGIC = b"IIA1"
ROOT = Path(__file__).resolve().parent.parent.parent


def read_request(sock: socket.socket) -> bytes:
    """The request's standard input, the payload (the request must be whole and well formed, and
    its arguments "-- ENV -", as scripts/example.c sends them: the bench sends only those)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the caller hung up")
        data += chunk
        if len(data) < 8:
            continue
        argc, offset = struct.unpack(">I", data[4:8])[0], 8
        for _ in range(argc):
            if offset + 4 > len(data):
                break
            offset += 4 + struct.unpack(">I", data[offset:offset + 4])[0]
        else:
            if offset + 4 <= len(data):
                length = struct.unpack(">I", data[offset:offset + 4])[0]
                if len(data) >= offset + 4 + length:
                    return data[offset + 4:offset + 4 + length]


def main(argv: list[str]) -> int:
    path, config_path, env_name, library = argv
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    config = configparser.ConfigParser()
    config.read(config_path)
    folder = Path(config_path).parent
    arn = config[env_name]["function"]
    endpoint = urlsplit(config[env_name]["lambda_endpoint"])
    ca_file = str(folder / config[env_name]["ca_bundle"])
    region = arn.split(":")[3]
    done = subprocess.run([sys.executable, str(ROOT / "iotinvoke.py"), "--credential-process", env_name],
                          capture_output=True, text=True, check=True)
    issued = json.loads(done.stdout)
    credentials = Credentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])
    host = endpoint.hostname or ""
    port = endpoint.port or 443
    target = "/2015-03-31/functions/%s/invocations" % quote(arn, safe="")
    url = "https://%s:%d%s" % (host, port, target)
    host_header = host if port == 443 else "%s:%d" % (host, port)

    if library == "urllib3":
        import urllib3

        pool = urllib3.HTTPSConnectionPool(host, port, cert_reqs="CERT_REQUIRED", ca_certs=ca_file, maxsize=1)

        def send(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
            response = pool.urlopen("POST", target, body=body, headers=headers, retries=False, redirect=False)
            return response.status, response.data
    elif library == "http.client":
        import http.client
        import ssl

        connection = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=ca_file))

        def send(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
    else:
        raise SystemExit("floor_agent.py: urllib3 or http.client, not %r" % library)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    listener.listen(128)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        sock, _ = listener.accept()
        with sock:
            try:
                body = read_request(sock)
            except (EOFError, OSError):
                continue  # a caller that hung up: nothing was sent
            request = AWSRequest(method="POST", url=url, data=body, headers={"Host": host_header})
            SigV4Auth(credentials, "lambda", region).add_auth(request)
            status, out = send(dict(request.headers.items()), body)
            err = b"" if status == 200 else b"floor_agent: HTTP %d: %s\n" % (status, out[:300])
            code = 0 if status == 200 else 70
            sock.sendall(MAGIC + struct.pack(">II", code, len(out)) + out + struct.pack(">I", len(err)) + err)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as e:  # the bench prints this log when the agent does not start
        sys.exit("floor_agent.py: iotinvoke.py --credential-process failed (exit %d): %s"
                 % (e.returncode, "".join((e.stderr or "").strip().splitlines()[-1:])))
    except Exception as e:
        sys.exit("floor_agent.py: %s: %s" % (type(e).__name__, e))
