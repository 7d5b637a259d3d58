#include "proxy/dashboard.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <string>

namespace weir::proxy {
namespace {

AdminRequest request(std::string method, std::string path) {
  AdminRequest r;
  r.method = std::move(method);
  r.path = std::move(path);
  return r;
}

const std::string* header(const AdminResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

// The text between <tag> and </tag>, which must occur exactly once.
std::string_view inline_block(std::string_view html, std::string_view tag) {
  std::string open = "<" + std::string(tag) + ">", close = "</" + std::string(tag) + ">";
  size_t start = html.find(open);
  REQUIRE(start != std::string_view::npos);
  REQUIRE(html.rfind(open) == start);
  start += open.size();
  size_t end = html.find(close, start);
  REQUIRE(end != std::string_view::npos);
  return html.substr(start, end - start);
}

std::string csp_hash(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr) == 1);
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, digest, static_cast<int>(len));
  return "'sha256-" + std::string(reinterpret_cast<char*>(b64), static_cast<size_t>(n)) + "'";
}

}  // namespace

TEST_CASE("dashboard: / and /ui serve the page with its security headers") {
  for (const char* path : {"/", "/ui"}) {
    for (const char* method : {"GET", "HEAD"}) {
      CAPTURE(path);
      CAPTURE(method);
      auto r = dashboard_response(request(method, path));
      REQUIRE(r);
      CHECK(r->status == 200);
      CHECK(r->content_type == "text/html; charset=utf-8");
      CHECK(r->body == kDashboardHtml);
      REQUIRE(header(*r, "Content-Security-Policy"));
      CHECK(*header(*r, "Content-Security-Policy") == kDashboardCsp);
      REQUIRE(header(*r, "X-Frame-Options"));
      CHECK(*header(*r, "X-Frame-Options") == "DENY");
    }
  }
}

TEST_CASE("dashboard: other methods get 405, other paths are the API's") {
  auto r = dashboard_response(request("POST", "/ui"));
  REQUIRE(r);
  CHECK(r->status == 405);
  REQUIRE(header(*r, "Allow"));
  CHECK(*header(*r, "Allow") == "GET, HEAD");
  for (const char* path : {"/ui/", "/index.html", "/api/v1/services", "/healthz", "/metrics"}) {
    CAPTURE(path);
    CHECK_FALSE(dashboard_response(request("GET", path)));
  }
}

TEST_CASE("dashboard: the CSP allows exactly the page's inline script and style") {
  const std::string csp(kDashboardCsp);
  CHECK(csp.find(csp_hash(inline_block(kDashboardHtml, "script"))) != std::string::npos);
  CHECK(csp.find(csp_hash(inline_block(kDashboardHtml, "style"))) != std::string::npos);
  CHECK(csp.find("default-src 'none'") != std::string::npos);
  CHECK(csp.find("unsafe") == std::string::npos);
  // Self-contained: no external script, stylesheet, image or font.
  for (const char* needle : {"<script ", "src=", "<link rel=\"stylesheet\"", "@import", "url("})
    CHECK_MESSAGE(std::string_view(kDashboardHtml).find(needle) == std::string_view::npos, needle);
}

}  // namespace weir::proxy
