#!/usr/bin/env python3
"""Run the local stand-in of AWS (IoT credentials provider, STS, Lambda) for iotinvoke.

Usage:
    python3 scripts/standin.py [--dir DIR] [--ports P1,P2,P3] [--log-requests] [--print-curl]

Starts the three HTTPS endpoints on 127.0.0.1 (free ports unless --ports gives them, in the
order iot,sts,lambda), writes DIR/iotinvoke.ini (default DIR: ./standin-run) with the test PKI
beside it, prints one line per endpoint and the config path, creates DIR/ready once serving,
and runs until SIGTERM or SIGINT (then exits 0 and removes DIR/ready).

Try it:
    python3 scripts/standin.py --dir /tmp/aws &
    python3 iotinvoke.py --config /tmp/aws/iotinvoke.ini dev '{"test":"test1"}'

Where AWS_CA_BUNDLE is set machine-wide, it replaces the file's ca_bundle for STS and Lambda (as
in boto3), so those two hops would not trust the stand-in: run iotinvoke with it empty
(``AWS_CA_BUNDLE= python3 iotinvoke.py ...``). The command says so on standard error when it is set.

With curl (``--print-curl`` prints these with the real ports and paths filled in). Hop 1, the
credentials provider over mutual TLS:

    curl --cert DIR/certs/device.pem.crt --key DIR/certs/device.pem.key --cacert DIR/ca.pem \\
         -H 'x-amzn-iot-thingname: edge-0001' https://localhost:P1/role-aliases/iotinvoke-alias/credentials

Hop 2, STS AssumeRole signed by curl's own SigV4 (curl >= 7.75), with hop 1's credentials:

    curl --cacert DIR/ca.pem --aws-sigv4 'aws:amz:ap-northeast-1:sts' --user "$AKID:$SECRET" \\
         -H "x-amz-security-token: $TOKEN" \\
         --data 'Action=AssumeRole&Version=2011-06-15&RoleSessionName=curl&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fiotinvoke-dev' \\
         https://localhost:P2/

Hop 3, Lambda Invoke with hop 2's credentials (a bare function name, so no encoding issues):

    curl --cacert DIR/ca.pem --aws-sigv4 'aws:amz:ap-northeast-1:lambda' --user "$AKID2:$SECRET2" \\
         -H "x-amz-security-token: $TOKEN2" --data '{"test":"test1"}' \\
         https://localhost:P3/2015-03-31/functions/ADCCrossAccountTest/invocations
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

from standin import StandIn  # noqa: E402


def _curl_examples(aws: StandIn) -> str:
    folder = aws.workdir
    device_cert, device_key = aws.certs["device"]
    return "\n".join([
        "# hop 1: credentials provider (mutual TLS)",
        f"curl --cert {device_cert} --key {device_key} --cacert {aws.ca_path} \\",
        f"     -H 'x-amzn-iot-thingname: edge-0001' {aws.urls['iot']}/role-aliases/iotinvoke-alias/credentials",
        "# hop 2: STS AssumeRole, with hop 1's accessKeyId/secretAccessKey/sessionToken",
        f"curl --cacert {aws.ca_path} --aws-sigv4 'aws:amz:ap-northeast-1:sts' --user \"$AKID:$SECRET\" \\",
        "     -H \"x-amz-security-token: $TOKEN\" \\",
        "     --data 'Action=AssumeRole&Version=2011-06-15&RoleSessionName=curl"
        "&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fiotinvoke-dev' \\",
        f"     {aws.urls['sts']}/",
        "# hop 3: Lambda Invoke, with hop 2's credentials",
        f"curl --cacert {aws.ca_path} --aws-sigv4 'aws:amz:ap-northeast-1:lambda' --user \"$AKID2:$SECRET2\" \\",
        "     -H \"x-amz-security-token: $TOKEN2\" --data '{\"test\":\"test1\"}' \\",
        f"     {aws.urls['lambda']}/2015-03-31/functions/ADCCrossAccountTest/invocations",
        f"# (work folder: {folder})",
    ])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Local stand-in of AWS for iotinvoke.")
    parser.add_argument("--dir", type=Path, default=Path("standin-run"), help="work folder (default: ./standin-run)")
    parser.add_argument("--ports", help="P1,P2,P3: ports for iot, sts, lambda (default: free ports)")
    parser.add_argument("--log-requests", action="store_true", help="log each request to stderr")
    parser.add_argument("--print-curl", action="store_true", help="print curl commands for the three hops")
    args = parser.parse_args(argv)

    ports: tuple[int, int, int] | None = None
    if args.ports:
        try:
            p1, p2, p3 = (int(part) for part in args.ports.split(","))
        except ValueError:
            parser.error("--ports takes three comma-separated numbers, e.g. 8443,8444,8445")
        ports = (p1, p2, p3)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    aws = StandIn(args.dir, ports=ports, log_requests=args.log_requests)
    try:
        aws.start()
    except OSError as error:
        print(f"standin: cannot listen: {error}", file=sys.stderr)
        return 1
    ready = aws.workdir / "ready"
    try:
        for hop, url in aws.urls.items():
            print(f"{hop:<7} {url}")
        print(f"config  {aws.config_path}")
        if args.print_curl:
            print(_curl_examples(aws))
        if os.environ.get("AWS_CA_BUNDLE"):
            print(f"standin: AWS_CA_BUNDLE is set ({os.environ['AWS_CA_BUNDLE']}): iotinvoke takes it over "
                  f"{aws.config_path.name}'s ca_bundle, so run it with AWS_CA_BUNDLE= (empty) against this stand-in",
                  file=sys.stderr)
        sys.stdout.flush()
        ready.write_text("".join(f"{hop} {url}\n" for hop, url in aws.urls.items()))
        stop.wait()
    finally:
        ready.unlink(missing_ok=True)
        aws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
