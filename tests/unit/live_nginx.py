"""A real nginx on loopback for the tests of what the pipeline renders (its site file) and checks (TLS, headers).

The binary is ``nginx`` on PATH or ``$TECHNICIA_NGINX``; tests skip when there is none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time


def nginx_binary() -> str | None:
    return os.environ.get("TECHNICIA_NGINX") or shutil.which("nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main_conf(tmp_path, site_text: str) -> str:
    (tmp_path / "site.conf").write_text(site_text)
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp_path / "nginx.conf"
    # Workers run as 'nobody' under root and could not read pytest's 0700 temporary directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nerror_log stderr;\ndaemon off;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}\ninclude {tmp_path}/site.conf;\n}}\n"
    )
    return str(main)


def self_signed(live, domain: str) -> None:
    """fullchain.pem, privkey.pem and chain.pem in ``live``, the layout certbot writes."""
    live.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={domain}",
         "-addext", f"subjectAltName=DNS:{domain}", "-keyout", str(live / "privkey.pem"), "-out", str(live / "fullchain.pem")],
        check=True, capture_output=True,
    )
    shutil.copy(live / "fullchain.pem", live / "chain.pem")


@contextlib.contextmanager
def running_nginx(tmp_path, site_text: str, port: int):
    """A real nginx serving ``site_text`` until the block ends; ready once ``port`` accepts connections."""
    main = main_conf(tmp_path, site_text)
    proc = subprocess.Popen([nginx_binary(), "-e", "stderr", "-p", str(tmp_path), "-c", main], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.02)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)
