"""``python -m tests.hub_emulator --port PORT --data DIR [--user NAME:TOKEN[:read] ...] [--org ORG:MEMBER ...]``"""

import argparse
import sys

from .auth import DEFAULT_ORGS, DEFAULT_USERS
from .server import make_server


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.hub_emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", required=True, help="folder for blobs and metadata (created if missing)")
    parser.add_argument("--user", action="append", default=[],
                        help=f"NAME:TOKEN or NAME:TOKEN:read, repeatable (default {DEFAULT_USERS[0]})")
    parser.add_argument("--org", action="append", default=[],
                        help=f"ORG:MEMBER, repeatable (default {DEFAULT_ORGS[0]})")
    args = parser.parse_args(argv)
    server = make_server(args.data, args.port, args.host, args.user, args.org)
    host, port = server.server_address[:2]
    print(f"Hub emulator serving on http://{host}:{port} (data in {args.data})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
