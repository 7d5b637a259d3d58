// The canonical form of a request's target and Host, which routes match on and which is
// forwarded, so that a backend never sees a path or host other than the one routing judged.
// Pure code, no I/O.
#pragma once

#include <string>
#include <string_view>

namespace weir::routing {

// `value` is the normalized form: a view of the input when it was already normal, else of the
// caller's `storage`. When `error` is not empty the input is refused (400) and `value` is empty.
struct Normalized {
  std::string_view value;
  std::string_view error;
  bool ok() const { return error.empty(); }
};

// An origin-form target ("/path?query", or "*"). The path:
//  - may hold only RFC 3986 pchar and '/', plus '[', ']', '^' and '|' (which browsers send
//    unencoded); every '%' starts two hex digits, and "%00" is refused;
//  - has percent-encoded unreserved characters decoded ("%61" -> "a", "%2e" -> "."), other escapes
//    upper-cased ("%2f" -> "%2F": an encoded slash stays encoded and is not a separator);
//  - has runs of '/' merged and "." and ".." segments removed (RFC 3986 5.2.4; ".." above the
//    root stays at the root);
//  - must not hold a "." or ".." segment with ';' parameters ("/..;/admin", also spelled
//    "/%2e%2e;x/admin"), which servlet containers read as a dot segment.
// The query is kept as sent (routes do not look at it); it must not hold '#' or an invalid '%'
// escape.
Normalized normalize_target(std::string_view target, std::string& storage);

// `path` (normal form, no query) with each segment's ';' parameters removed ("/api;v=1/admin;x"
// -> "/api/admin"): what routes match on, since servlet containers resolve a path that way.
// A view of `path` itself when it has no ';', else of `storage`.
std::string_view path_without_parameters(std::string_view path, std::string& storage);

// A Host value (or absolute-form authority): uri-host [":" port] (RFC 3986 3.2.2). The host is
// a reg-name, an IPv4 address or a bracketed IPv6 address; percent-encoded unreserved
// characters are decoded, other escapes refused; it is lower-cased and one trailing dot is
// removed. A port is 1 to 5 digits up to 65535 and is kept; an empty one is dropped. An empty
// value stays empty (no Host on HTTP/1.0).
Normalized normalize_authority(std::string_view authority, std::string& storage);

}  // namespace weir::routing
