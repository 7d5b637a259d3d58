#include "proxy/dashboard.h"

namespace weir::proxy {

std::optional<AdminResponse> dashboard_response(const AdminRequest& req) {
  if (req.path != "/" && req.path != "/ui") return std::nullopt;
  if (req.method != "GET" && req.method != "HEAD") {
    AdminResponse r = admin_error(405, "method_not_allowed", "the dashboard answers GET only");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  AdminResponse r;
  r.content_type = "text/html; charset=utf-8";
  r.body = kDashboardHtml;
  r.headers = {{"Content-Security-Policy", std::string(kDashboardCsp)},
               {"X-Frame-Options", "DENY"},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"}};
  return r;
}

}  // namespace weir::proxy
