"""`deband serve`: the local web page (see `deband.apps.serve`)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from deband.cli.options import UsageError, int_range, load_debander
from deband.config import DEFAULT_STEPS

EPILOG = """examples:
  deband serve                          http://127.0.0.1:8000/ on this machine only
  deband serve --port 0                 any free port (the address is printed)
  deband serve --max-upload-mb 300      allow larger uploads
  deband serve --host 0.0.0.0 --allow-host deband.lan
                                        every address; answers http://deband.lan:8000/ too

Only requests to a loopback name (127.0.0.1, localhost, [::1]) or to --host are answered;
with --host 0.0.0.0 or :: any IP address too. Uploads from pages of other sites are refused.

Ctrl-C or SIGTERM stops the server (exit status 130, as for every interrupted command).
"""
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # listening on every address
GRACE_SECONDS = 10  # on SIGINT/SIGTERM, the request in progress gets this long to finish


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local web page: drop images, compare, download", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int_range(0, 65535), default=8000, help="0 picks a free port (default 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests to this host name (repeat for more; * for any)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="let pages of this origin (scheme://host[:port]) upload (repeat for more)")
    p.add_argument("--max-upload-mb", type=int_range(1, 100_000), default=100,
                   help="largest upload in MB (default 100)")
    p.add_argument("--max-pixels", type=int_range(1, 10**12), default=None,
                   help="refuse larger images (default 300 000 000)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--tile", type=int_range(128, 16384), default=2048, help="tile side in pixels (default 2048)")
    p.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    # the page sets steps and strength per upload; these are its defaults and the CLI's
    p.set_defaults(run=cmd_serve, steps=DEFAULT_STEPS, strength=1.0, seed=0, restore_bars=False, no_guard=False)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); UsageError when that fails."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise UsageError(f"cannot listen on {host} port {port} ({e.strerror or e}); try another --port") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from deband.cli.exits import INTERRUPTED
    from deband.io.files import DEFAULT_MAX_PIXELS

    try:
        from deband.apps.serve import LOOPBACK_HOSTS, ServeOptions, create_app, host_name, run
    except ImportError as e:
        raise UsageError(f"deband serve needs the web extra ({e.name} is missing): pip install 'deband[web]'") from None

    if args.host not in LOOPBACK_HOSTS:
        print(f"deband: warning: listening on {args.host}: anyone who can reach it can upload images "
              "and use this machine's CPU", file=sys.stderr)
    debander = load_debander(args)  # once, before the first request
    hosts = LOOPBACK_HOSTS | {host_name(h) for h in [args.host, *args.allow_host]} - {""}
    options = ServeOptions(max_upload_bytes=args.max_upload_mb * 2**20,
                           max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, hosts=hosts,
                           any_ip=args.host in WILDCARD_HOSTS,
                           origins=frozenset(o.lower().rstrip("/") for o in args.allow_origin))
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"deband: serving http://{shown}:{port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    if not run(create_app(debander, options), sock, GRACE_SECONDS):
        return 1  # it stopped by itself: uvicorn has said why
    print("deband: server stopped", file=sys.stderr)
    return INTERRUPTED
