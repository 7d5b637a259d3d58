"""weir's own replies to gRPC requests (content-type application/grpc*) are gRPC-shaped, as
gRPC clients need: HTTP 200 with grpc-status and grpc-message (a trailers-only response), with
the code that says what happened (UNIMPLEMENTED: no route; UNAVAILABLE: no endpoint to send to;
DEADLINE_EXCEEDED: upstream timeout; RESOURCE_EXHAUSTED: a limit). Client and backend are the
real gRPC stack (python3-grpcio); HTTP/1.1 and plain-HTTP checks use curl."""

import os
import sys
import time
import unittest
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]


class GrpcBackend:
    """A grpcio server for /test.Echo/Call (raw bytes): answers the request; b"slow" sleeps 2 s
    first."""

    def __init__(self, cleanups):
        def call(request, context):
            if request == b"slow":
                time.sleep(2)
            return request

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                if details.method == "/test.Echo/Call":
                    return grpc.unary_unary_rpc_method_handler(call)
                return None

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                  handlers=[Handler()])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{self.port}"
        self.server.start()
        cleanups(self.server.stop, None)


class GrpcLocalReplies(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = GrpcBackend(cls.addClassCleanup)
        services = [
            h.service("echo", h.version("v", 100, cls.backend.addr, protocol="h2")),
            h.service("gone", h.version("v", 100, f"127.0.0.1:{h.dead_port()}",
                                        protocol="h2")),
        ]
        routes = [h.route("echo", path_prefix="/test.Echo/"),
                  h.route("gone", path_prefix="/test.Gone/")]
        cls.edge = h.start_weir(cls.addClassCleanup, h.render_config(
            services, routes, listeners=[{"name": "public", "protocols": ["http1", "h2c"]}],
            proxy={"upstream_response_timeout_ms": 300, "max_request_body_bytes": 1024}))
        cls.addr = "%s:%d" % cls.edge.addr
        cls.channel = grpc.insecure_channel(cls.addr, options=CHANNEL_OPTIONS)
        cls.addClassCleanup(cls.channel.close)

    def call(self, method, payload=b"hi", timeout=10):
        return self.channel.unary_unary(method)(payload, timeout=timeout)

    def assertCode(self, method, payload, code, message_part):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(method, payload)
        err = cm.exception
        self.assertEqual(err.code(), code, err.details())
        self.assertIn(message_part, err.details())

    def test_a_normal_call_passes(self):
        self.assertEqual(self.call("/test.Echo/Call", b"hello"), b"hello")

    def test_no_route_is_unimplemented(self):
        self.assertCode("/other.Service/Call", b"hi", grpc.StatusCode.UNIMPLEMENTED,
                        "weir: 404 Not Found")

    def test_connect_failure_is_unavailable(self):
        self.assertCode("/test.Gone/Call", b"hi", grpc.StatusCode.UNAVAILABLE, "weir: 502")

    def test_upstream_timeout_is_deadline_exceeded(self):
        started = time.monotonic()
        self.assertCode("/test.Echo/Call", b"slow", grpc.StatusCode.DEADLINE_EXCEEDED,
                        "weir: 504 Gateway Timeout")
        # weir's 300 ms timeout, not the client's 10 s deadline.
        self.assertLess(time.monotonic() - started, 1.9)

    def test_body_limit_is_resource_exhausted(self):
        self.assertCode("/test.Echo/Call", b"x" * 4096, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "weir: 413 Content Too Large")
        self.assertEqual(self.call("/test.Echo/Call", b"after"), b"after")

    def curl(self, *args):
        r = h.curl("-i", *args, "http://" + self.addr + "/other.Service/Call")
        self.assertEqual(r.returncode, 0, r.stderr)
        head = r.stdout.decode("latin-1").split("\r\n\r\n", 1)[0].lower()
        return [line.strip() for line in head.split("\r\n")]

    def test_http2_trailers_only_shape(self):
        # No body: curl takes the RST_STREAM(NO_ERROR) that stops an unfinished upload for an
        # error at times (the gRPC client above does not).
        lines = self.curl("--http2-prior-knowledge", "-X", "POST", "-H",
                          "content-type: application/grpc", "-H", "te: trailers")
        self.assertEqual(lines[0], "http/2 200")
        self.assertIn("content-type: application/grpc", lines)
        self.assertIn("grpc-status: 12", lines)
        self.assertIn("grpc-message: weir: 404 not found", lines)

    def test_http1_grpc_web_gets_the_same(self):
        lines = self.curl("-H", "content-type: application/grpc-web+proto",
                          "--data-binary", "abcde")
        self.assertEqual(lines[0], "http/1.1 200 ok")
        self.assertIn("grpc-status: 12", lines)
        self.assertIn("content-length: 0", lines)

    def test_other_clients_keep_plain_replies(self):
        lines = self.curl("--http2-prior-knowledge")
        self.assertEqual(lines[0], "http/2 404")
        self.assertIn("content-type: text/plain", lines)
        self.assertFalse(any(x.startswith("grpc-status") for x in lines))


if __name__ == "__main__":
    unittest.main()
