#include "proxy/http_util.h"

#include <doctest/doctest.h>

#include <string>

namespace weir::proxy {
namespace {

TEST_CASE("is_grpc_content_type") {
  CHECK(is_grpc_content_type("application/grpc"));
  CHECK(is_grpc_content_type("application/grpc+proto"));
  CHECK(is_grpc_content_type("Application/GRPC-web+json"));
  CHECK_FALSE(is_grpc_content_type("application/json"));
  CHECK_FALSE(is_grpc_content_type("application/grp"));
  CHECK_FALSE(is_grpc_content_type(""));
}

TEST_CASE("grpc_status_for: weir's statuses as gRPC codes") {
  CHECK(grpc_status_for(404) == 12);  // UNIMPLEMENTED: no route
  CHECK(grpc_status_for(503) == 14);  // UNAVAILABLE: no healthy endpoint
  CHECK(grpc_status_for(502) == 14);  // UNAVAILABLE: connect failed
  CHECK(grpc_status_for(504) == 4);   // DEADLINE_EXCEEDED: upstream timeout
  CHECK(grpc_status_for(408) == 4);
  CHECK(grpc_status_for(413) == 8);   // RESOURCE_EXHAUSTED: limits
  CHECK(grpc_status_for(431) == 8);
  CHECK(grpc_status_for(414) == 8);
  CHECK(grpc_status_for(400) == 13);  // INTERNAL
  CHECK(grpc_status_for(501) == 12);
  CHECK(grpc_status_for(417) == 2);   // UNKNOWN
}

TEST_CASE("local_reply: plain for HTTP clients, HTTP 200 with grpc-status for gRPC ones") {
  LocalReply plain = local_reply(504, "", false);
  CHECK(plain.status == 504);
  CHECK(plain.content_type == "text/plain");
  CHECK(plain.body == "weir: 504 Gateway Timeout\n");
  CHECK(plain.grpc_status == -1);

  LocalReply g = local_reply(503, "100% of versions have no healthy endpoint", true);
  CHECK(g.status == 200);
  CHECK(g.content_type == "application/grpc");
  CHECK(g.body.empty());
  CHECK(g.grpc_status == 14);
  CHECK(g.grpc_message ==
        "weir: 503 Service Unavailable: 100%25 of versions have no healthy endpoint");
}

TEST_CASE("error_response renders a gRPC local reply as a trailers-only HTTP/1.1 response") {
  CHECK(error_response(404, false, false, "", true) ==
        "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: 12\r\n"
        "grpc-message: weir: 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  CHECK(error_response(404, true) ==
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
        "Connection: close\r\n\r\nweir: 404 Not Found\n");
}

}  // namespace
}  // namespace weir::proxy
