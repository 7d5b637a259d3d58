#!/usr/bin/python3
"""Writes a weir config with N services for the bench (bench/profile.sh, bench/run.sh scale-5k):
one plain listener, 1 worker, and per service i two versions (blue 90 / green 10) on the given
backends and an exact-host route for "svc<i>.bench". The first line names the host that the
bench sends its traffic to ("# bench host: svc0.bench"). With --format nginx or haproxy it
writes the same shape for those proxies (one server block / backend per service).

usage: gen_config.py --services N --blue HOST:PORT --green HOST:PORT [--state-dir DIR] [--tokens-file FILE]
                     [--format weir|nginx|haproxy] [--port P] [--workers 1]
"""

import argparse
import sys


def weir(args, out):
    out.write(f"""# bench host: svc0.bench
[proxy]
workers = {args.workers}

[admin]
address = "127.0.0.1:0"
state_dir = "{args.state_dir}"
tokens_file = "{args.tokens_file}"

[[listener]]
name = "plain"
address = "127.0.0.1:{args.port}"
""")
    for i in range(args.services):
        out.write(f"""
[[service]]
name = "svc{i}"
stable = "blue"
  [[service.version]]
  name = "blue"
  weight = 90
  endpoints = ["{args.blue}"]
  [[service.version]]
  name = "green"
  weight = 10
  endpoints = ["{args.green}"]

[[route]]
listener = "plain"
host = "svc{i}.bench"
service = "svc{i}"
""")


def nginx(args, out):
    out.write("# bench host: svc0.bench\n")
    for i in range(args.services):
        out.write(f"""upstream svc{i} {{
  server {args.blue} weight=9;
  server {args.green} weight=1;
  keepalive 64;
}}
server {{
  listen 127.0.0.1:{args.port};
  server_name svc{i}.bench;
  location / {{
    proxy_pass http://svc{i};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
  }}
}}
""")


def haproxy(args, out):
    out.write("# bench host: svc0.bench\n")
    out.write(f"frontend bench\n  bind 127.0.0.1:{args.port}\n")
    for i in range(args.services):
        out.write(f"  use_backend svc{i} if {{ hdr(host) -i svc{i}.bench }}\n")
    for i in range(args.services):
        out.write(f"""backend svc{i}
  balance roundrobin
  server blue {args.blue} weight 90
  server green {args.green} weight 10
""")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, required=True)
    ap.add_argument("--blue", required=True)
    ap.add_argument("--green", required=True)
    ap.add_argument("--state-dir", default="/tmp/weir-bench-state")
    ap.add_argument("--tokens-file", default="/tmp/weir-bench-tokens.toml")
    ap.add_argument("--format", choices=("weir", "nginx", "haproxy"), default="weir")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if args.services < 1:
        ap.error("--services must be at least 1")
    {"weir": weir, "nginx": nginx, "haproxy": haproxy}[args.format](args, sys.stdout)


if __name__ == "__main__":
    main()
