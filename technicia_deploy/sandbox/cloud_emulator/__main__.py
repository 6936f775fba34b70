"""``python -m technicia_deploy.sandbox.cloud_emulator --config FILE --port N``"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from technicia_deploy.sandbox.cloud_emulator.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m technicia_deploy.sandbox.cloud_emulator")
    parser.add_argument("--config", type=Path, required=True, help="registry JSON (key hashes, public keys, processors)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # SIGTERM (sandbox down) ends serve_forever through SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.config, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
