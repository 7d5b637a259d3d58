"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (run with Debian's /usr/bin/python3;
python3-h2 makes the HTTP/2 frames). The seeds are small valid and nearly valid inputs in each
target's input format; libFuzzer's findings are added next to them as regression inputs."""

import os

import h2.config
import h2.connection

HERE = os.path.dirname(os.path.abspath(__file__))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def h1_head():
    reqs = {
        "get": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "post_length": b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "chunked": b"PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "absolute": b"GET http://b.example:8080/x?y HTTP/1.1\r\nHost: b.example:8080\r\n\r\n",
        "http10": b"HEAD /h HTTP/1.0\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\r\n",
        "expect": b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        "upgrade": b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "smuggle": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    }
    for i, (name, req) in enumerate(reqs.items()):
        write("h1_head", name, bytes([37 * i % 256, 200 - 11 * i, i % 2]) + req)


def chunked():
    bodies = {
        "simple": b"5\r\nhello\r\n0\r\n\r\n",
        "ext_trailer": b"3;name=val\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nGET",
        "empty": b"0\r\n\r\n",
        "upper_hex": b"1F\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n",
        "truncated": b"10\r\nonly-some",
        "bad_size": b"zz\r\n",
    }
    for i, (name, body) in enumerate(bodies.items()):
        write("chunked", name, bytes([50 + 30 * i, 250 - 20 * i]) + body)


def h2_frames(build):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    build(conn)
    data = conn.data_to_send()
    assert data.startswith(PREFACE)
    return data[len(PREFACE):]


def h2_session():
    get = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "only.example"),
            (":path", "/x/y"), ("content-length", "4")]

    def one_get(c):
        c.send_headers(1, get, end_stream=True)

    def post_body(c):
        c.send_headers(1, post)
        c.send_data(1, b"abcd", end_stream=True)

    def many(c):
        for sid in (1, 3, 5):
            c.send_headers(sid, get[:3] + [(":path", f"/s{sid}"), ("cookie", "a=1"),
                                           ("cookie", "b=2")], end_stream=True)
        c.reset_stream(3)
        c.ping(b"12345678")
        c.increment_flow_control_window(1000)

    def trailers(c):
        c.send_headers(1, get[:3] + [(":path", "/t"), ("te", "trailers")])
        c.send_data(1, b"x")
        c.send_headers(1, [("grpc-status", "0")], end_stream=True)

    for i, (name, build) in enumerate([("get", one_get), ("post_body", post_body),
                                       ("many_streams", many), ("trailers", trailers)]):
        write("h2_session", name, bytes([90, 180, i * 7 % 32]) + h2_frames(build))


CONFIG = b"""[proxy]
workers = 1
max_request_body_bytes = 1024
[[listener]]
name = "public"
address = "127.0.0.1:0"
[[service]]
name = "shop"
stable = "blue"
override_header = "x-weir-version"
override_cookie = "weir_version"
sticky = { header = "x-user-id" }
  [[service.version]]
  name = "blue"
  weight = 90
  endpoints = ["127.0.0.1:9001", "127.0.0.1:9003"]
  [[service.version]]
  name = "green"
  weight = 10
  endpoints = ["127.0.0.1:9002"]
  [service.guard]
  max_error_rate = 0.05
[[service]]
name = "api"
stable = "v1"
assign_cookie = "weir_bucket"
balance = "least_request"
  [[service.version]]
  name = "v1"
  weight = 3
  endpoints = ["127.0.0.1:9101"]
  [[service.version]]
  name = "v2"
  weight = 1
  endpoints = ["[::1]:9102"]
[[route]]
listener = "public"
host = "*"
path_prefix = "/"
service = "shop"
[[route]]
listener = "public"
host = "*.api.example"
path_prefix = "/v"
service = "api"
[[route]]
listener = "public"
host = "exact.example"
path_prefix = "/only"
service = "api"
"""


def config_load():
    write("config_load", "two_services", CONFIG)
    write("config_load", "rollout", b"""[[listener]]
name = "l"
address = "127.0.0.1:8080"
protocols = ["http1", "h2c"]
[[service]]
name = "s"
stable = "a"
slow_start_ms = 500
  [service.health_check]
  path = "/ready"
  expected_status = ["200-299", 304]
  [service.outlier_detection]
  consecutive_failures = 3
  [service.mirror]
  version = "b"
  percent = 5
  [[service.version]]
  name = "a"
  weight = 100
  endpoints = ["127.0.0.1:1"]
  [[service.version]]
  name = "b"
  weight = 0
  endpoints = ["127.0.0.1:2"]
  protocol = "h2"
  [service.rollout]
  version = "b"
  steps = [5, 25, 100]
  step_s = 30
[[route]]
listener = "l"
service = "s"
""")
    write("config_load", "errors", b'[proxy]\nworkers = "two"\n[[route]]\nlistener = "x"\n')


def routing():
    requests = (b"a.example / blue x x\n"
                b"x.api.example /v1/items - weir_version=green u1\n"
                b"EXACT.example:80 /only/x green weir_bucket=42 u2\n"
                b"exact.example /other - - u3\n"
                b"[::1]:8080 /x/../y - - u4\n")
    write("routing", "mixed", CONFIG + b"\n%%\n\x00" + requests)
    write("routing", "some_down", CONFIG + b"\n%%\n\x05" + requests)


def admin_api():
    def rec(token, fail, line, if_match=b"", body=b""):
        return bytes([token, fail]) + line + b"\n" + if_match + b"\n" + body + b"\n"

    write("admin_api", "read", rec(2, 0, b"GET /api/v1/services") +
          rec(0, 0, b"GET /healthz") + rec(2, 0, b"GET /api/v1/services/shop"))
    write("admin_api", "weights", rec(1, 0, b"PUT /api/v1/services/shop/weights", b'"1"',
                                      b'{"weights":{"green":50},"reason":"fuzz"}') +
          rec(1, 1, b"PUT /api/v1/services/shop/weights", b"*", b'{"weights":{"blue":0}}') +
          rec(1, 0, b"POST /api/v1/services/shop/promote", b"W/\"2\"", b'{"version":"green"}'))
    write("admin_api", "denied", rec(3, 0, b"PUT /api/v1/services/shop/weights", b"",
                                     b'{"weights":{"green":100}}') +
          rec(2, 0, b"POST /api/v1/reload") + rec(0, 0, b"GET /metrics"))
    write("admin_api", "misc", rec(1, 0, b"GET /api/v1/events?since=0&limit=5") +
          rec(1, 0, b"POST /api/v1/services/shop/guard", b"", b'{"enabled":false,"reason":"x"}') +
          rec(1, 0, b"POST /api/v1/services/shop/rollback", b"", b"{}") +
          rec(1, 0, b"POST /api/v1/services/shop/rollout/start") +
          rec(1, 0, b"GET /api/v1/services/shop/explain"))


if __name__ == "__main__":
    h1_head()
    chunked()
    h2_session()
    config_load()
    routing()
    admin_api()
