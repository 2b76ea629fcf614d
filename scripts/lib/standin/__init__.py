"""Local stand-in of AWS for iotinvoke's demo, end-to-end tests and benchmarks.

Three HTTPS endpoints on loopback, faithful to AWS's documented behaviour:

- ``iot``: the AWS IoT credentials provider, real mutual TLS against a generated test CA;
- ``sts``: STS AssumeRole (Query API, XML), strict SigV4, trust and identity policies,
  role-chaining and duration limits;
- ``lambda``: Lambda Invoke (REST-JSON), strict SigV4, identity and resource policies, the
  cross-account log rule, payload limits, Python handler files in ``functions/`` as functions.

``StandIn`` starts them and exposes counters, fault switches, a shiftable clock and the world
model. The command ``scripts/standin.py`` runs the same thing from a shell.
"""
from .harness import HOPS, StandIn

__all__ = ["HOPS", "StandIn"]
