"""Load generator ceiling: our generator (and an httpx-based alternative) against ``wrk`` on the same target.

Target: a local nginx (Debian package; one worker process) on 127.0.0.1, over
HTTP and HTTPS (self-signed certificate generated here), serving a small
static page. Each tool runs the same closed loop (N connections, keep-alive,
D seconds) one after the other, pinned to a different CPU than nginx when the
machine has two or more. Results go to stdout as the markdown table of
docs/benchmarks.md, "Load generator ceiling".

    uv run python bench/bench_loadtest.py [--duration 5] [--connections 4,16,64]

Needs: nginx and wrk (``apt-get install nginx-light wrk``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from technicia_deploy.checks import loadtest  # noqa: E402
from technicia_deploy.sandbox.processes import free_port, wait_for_port  # noqa: E402

DOMAIN = "bench.technicia.test"
PAGE = "<!doctype html><html><head><title>TechnicIA</title></head><body>" + "x" * 512 + "</body></html>\n"


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def start_nginx(directory: Path, http_port: int, https_port: int, cert: Path, key: Path) -> subprocess.Popen:
    root = directory / "www"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    conf = directory / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root};
        index index.html;
    }}
}}
""")
    cpu = ["taskset", "-c", "0"] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []
    proc = subprocess.Popen(cpu + ["nginx", "-p", str(directory), "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", http_port, 10, "nginx")
    wait_for_port("127.0.0.1", https_port, 10, "nginx")
    return proc


def client_cpu() -> list[str]:
    return ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []


def run_wrk(url: str, connections: int, duration: int) -> float:
    out = subprocess.run(client_cpu() + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))


def run_ours(scheme: str, port: int, connections: int, duration: int, cert: Path) -> loadtest.LoadResult:
    # A child process pinned like wrk, so both tools get the same single CPU.
    code = (
        "import sys, json; sys.path.insert(0, %r)\n"
        "from technicia_deploy.checks import loadtest\n"
        "from technicia_deploy.checks.target import Target\n"
        "t = Target(%r, '127.0.0.1', https_port=%d, http_port=%d, extra_ca_pem=open(%r).read())\n"
        "r = loadtest.run(t, '/', %d, %d, scheme=%r)\n"
        "print(json.dumps([r.requests_per_s, r.errors, r.p50_ms, r.p99_ms]))\n"
    ) % (str(Path(__file__).resolve().parents[1]), DOMAIN, port, port, str(cert), connections, duration, scheme)
    import json

    out = subprocess.run(client_cpu() + [sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rps, errors, p50, p99 = json.loads(out)
    return rps, errors, p50, p99


def run_httpx(scheme: str, port: int, connections: int, duration: int, cert: Path) -> float:
    code = (
        "import asyncio, ssl, time, httpx\n"
        "async def main():\n"
        "    ctx = ssl.create_default_context(); ctx.load_verify_locations(%r)\n"
        "    url = '%s://127.0.0.1:%d/'\n"
        "    limits = httpx.Limits(max_connections=%d, max_keepalive_connections=%d)\n"
        "    async with httpx.AsyncClient(verify=ctx, limits=limits) as client:\n"
        "        deadline = time.perf_counter() + %d; done = 0\n"
        "        async def worker():\n"
        "            nonlocal done\n"
        "            while time.perf_counter() < deadline:\n"
        "                r = await client.get(url, headers={'Host': %r}, extensions={'sni_hostname': %r}); done += 1\n"
        "        start = time.perf_counter()\n"
        "        await asyncio.gather(*(worker() for _ in range(%d)))\n"
        "        print(done / (time.perf_counter() - start))\n"
        "asyncio.run(main())\n"
    ) % (str(cert), scheme, port, connections, connections, duration, DOMAIN, DOMAIN, connections)
    out = subprocess.run(client_cpu() + [sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", default="4,16,64")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (apt-get install nginx-light wrk)")
    with tempfile.TemporaryDirectory(prefix="technicia-bench-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the page
        cert, key = self_signed(directory)
        http_port, https_port = free_port(), free_port()
        nginx = start_nginx(directory, http_port, https_port, cert, key)
        try:
            print("| scheme | connections | wrk req/s | ours req/s | ours / wrk | ours p50 ms | ours p99 ms | httpx req/s |")
            print("|---|---|---|---|---|---|---|---|")
            for scheme, port in (("http", http_port), ("https", https_port)):
                for connections in (int(c) for c in args.connections.split(",")):
                    wrk = run_wrk(f"{scheme}://127.0.0.1:{port}/", connections, args.duration)
                    rps, errors, p50, p99 = run_ours(scheme, port, connections, args.duration, cert)
                    httpx_rps = run_httpx(scheme, port, connections, args.duration, cert)
                    assert errors == 0, f"our generator saw {errors} errors"
                    print(f"| {scheme} | {connections} | {wrk:,.0f} | {rps:,.0f} | {rps / wrk:.0%} | {p50:.2f} | "
                          f"{p99:.2f} | {httpx_rps:,.0f} |", flush=True)
        finally:
            nginx.terminate()
            nginx.wait(10)


if __name__ == "__main__":
    main()
