#!/usr/bin/env python3
"""What a device key in hardware costs per call, against a PEM key, on the local stand-in.

Usage: .venv/bin/python scripts/bench_hwkeys.py [--runs N] [--warmup K]

Candidates, each `python iotinvoke.py dev PAYLOAD` as its own process, run interleaved (every
round runs each once, in a shuffled order; K warm-up rounds are discarded):
  pem      the stand-in's PEM key file (no OpenSSL configuration);
  softhsm  the key in a SoftHSM2 token through pkcs11-provider (openssl_conf, pin_file);
  tpm      the key in a software TPM 2.0 (swtpm + tpm2-abrmd + tpm2-pkcs11), same route;
each cold (cache deleted before the run: three requests, hop 1 signs with the key) and warm
(cached credentials: one request, the key is not used; what remains is loading the provider).
Prints medians of wall time per call and of the call's CPU time (user + system, from wait4; the
TPM's own work runs in swtpm and tpm2-abrmd and is not in it), with ratios to the PEM key in the
same mode. CPU time is the steadier figure on a busy machine.
Needs the Debian packages scripts/test installs; the TPM is left out when they are missing.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts" / "lib")]

import hwkeys  # noqa: E402
from standin import StandIn  # noqa: E402

FN = "arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest"
ROLE = "arn:aws:iam::111111111111:role/iotinvoke-dev"


def config(folder: Path, aws: StandIn, name: str, cert: Path, key: Path, extra: str = "") -> Path:
    urls = aws.urls
    path = folder / f"{name}.ini"
    path.write_text(
        f"[DEFAULT]\nsts_endpoint = {urls['sts']}\nlambda_endpoint = {urls['lambda']}\nca_bundle = {aws.ca_path}\n"
        f"[iot]\nendpoint = {urls['iot']}\nrole_alias = iotinvoke-alias\ncert = {cert}\nkey = {key}\n"
        f"ca = {aws.ca_path}\nthing_name = edge-0001\n{extra}[dev]\nfunction = {FN}\nrole_arn = {ROLE}\n"
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if hwkeys.missing_for_softhsm():
        print("missing: " + ", ".join(hwkeys.missing_for_softhsm()), file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-hwkeys-") as tmp:
        folder = Path(tmp)
        with StandIn(folder / "standin") as aws:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTINVOKE_", "OPENSSL_CONF"))}
            pin = hwkeys.write_secret(folder / "pin", hwkeys.PIN)
            cert, key = aws.certs["device"]
            configs = {"pem": config(folder, aws, "pem", cert, key)}
            token = hwkeys.SoftHsmToken(folder / "softhsm")
            env.update(token.env)
            conf = hwkeys.openssl_conf(folder / "softhsm" / "openssl.cnf", token.module)
            key_file = folder / "softhsm" / "device.key"
            key_file.write_bytes(hwkeys.provider_uri_pem(token.uri))
            cert_file = hwkeys.register(aws, token.public_key_pem, folder / "softhsm" / "device.pem.crt", "softhsm")
            configs["softhsm"] = config(folder, aws, "softhsm", cert_file, key_file,
                                        f"openssl_conf = {conf}\npin_file = {pin}\n")
            soft_tpm = None
            if not hwkeys.missing_for_tpm():
                (folder / "tpm").mkdir()
                soft_tpm = hwkeys.SoftTpm(folder / "tpm").__enter__()
                env.update(soft_tpm.env)
                key_file = folder / "tpm" / "device.key"
                key_file.write_bytes(hwkeys.provider_uri_pem(soft_tpm.uri))
                cert_file = hwkeys.register(aws, soft_tpm.public_key_pem, folder / "tpm" / "device.pem.crt", "tpm")
                configs["tpm"] = config(folder, aws, "tpm", cert_file, key_file,
                                        f"openssl_conf = {folder / 'tpm' / 'openssl.cnf'}\npin_file = {pin}\n")
            try:
                times = measure(configs, env, folder, args.runs, args.warmup)
            finally:
                if soft_tpm is not None:
                    soft_tpm.stop()
    print(f"iotinvoke, {args.runs} runs per candidate ({args.warmup} warm-up rounds discarded), "
          f"Python {sys.version.split()[0]}, "
          f"median wall time per call:\n")
    print("| key | cold wall | ratio | cold CPU | ratio | warm wall | ratio | warm CPU | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in configs:
        cells = []
        for mode in ("cold", "warm"):
            for kind in (0, 1):
                value = statistics.median(t[kind] for t in times[name, mode])
                base = statistics.median(t[kind] for t in times["pem", mode])
                cells += [f"{value:.1f} ms", f"{value / base:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\ncold: cache deleted, three requests, hop 1 signs with the key; warm: one request, key unused")
    return 0


def measure(configs: dict[str, Path], env: dict[str, str], folder: Path, runs: int,
            warmup: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(wall ms, CPU ms) of each run of each (candidate, mode)."""
    candidates = [(name, mode) for name in configs for mode in ("cold", "warm")]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {c: [] for c in candidates}
    for round_ in range(warmup + runs):
        random.shuffle(candidates)
        for name, mode in candidates:
            cache = folder / f"cache-{name}-{mode}"
            if mode == "cold":
                shutil.rmtree(cache, ignore_errors=True)
            argv = [sys.executable, str(ROOT / "iotinvoke.py"), "--config", str(configs[name]), "dev", '{"test":"test1"}']
            with tempfile.TemporaryFile() as err:
                started = time.perf_counter()
                child = subprocess.Popen(argv, env={**env, "IOTINVOKE_CACHE_DIR": str(cache)},
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
                _, status, usage = os.wait4(child.pid, 0)
                elapsed = (time.perf_counter() - started) * 1000
                child.returncode = os.waitstatus_to_exitcode(status)
                if child.returncode != 0:
                    err.seek(0)
                    raise SystemExit(f"{name} {mode} failed ({child.returncode}): {err.read().decode(errors='replace')}")
            if round_ >= warmup:
                times[name, mode].append((elapsed, (usage.ru_utime + usage.ru_stime) * 1000))
    return times


if __name__ == "__main__":
    sys.exit(main())
