// The admin dashboard: one self-contained HTML page (proxy/dashboard.html, inline CSS and
// JavaScript) served at / and /ui on the admin listener. The page holds no data, so it is served
// without a token; its calls to the JSON API carry the token the operator gives it.
#pragma once

#include <optional>
#include <string_view>

#include "proxy/admin_api.h"

namespace weir::proxy {

// The page for GET or HEAD of / and /ui (405 for other methods there); nullopt for any other
// path, which is the API's.
std::optional<AdminResponse> dashboard_response(const AdminRequest& req);

// Generated at build time by proxy/dashboard.cmake: the page, and a Content-Security-Policy
// that allows its inline script and style by their SHA-256 and nothing else but the API.
extern const std::string_view kDashboardHtml;
extern const std::string_view kDashboardCsp;

}  // namespace weir::proxy
