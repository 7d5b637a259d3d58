#include "routing/normalize.h"

#include <arpa/inet.h>

#include <array>
#include <cstdint>

namespace weir::routing {

namespace {

enum CharClass : uint8_t {
  kUnreserved = 1,   // ALPHA DIGIT - . _ ~
  kPathRaw = 2,      // allowed unencoded in a path (besides '%')
  kQueryBad = 4,     // refused unencoded in a query
  kRegName = 8,      // allowed unencoded in a reg-name (besides '%')
};

constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> t{};
  auto add = [&t](std::string_view chars, uint8_t cls) {
    for (char c : chars) t[static_cast<unsigned char>(c)] |= cls;
  };
  for (int c = 0; c < 256; ++c) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum) t[c] |= kUnreserved | kPathRaw | kRegName;
    if (c <= 0x20 || c == 0x7f) t[c] |= kQueryBad;
  }
  add("-._~", kUnreserved | kPathRaw | kRegName);
  add("!$&'()*+,;=", kPathRaw | kRegName);  // sub-delims
  add(":@/", kPathRaw);
  add("[]^|", kPathRaw);
  add("#", kQueryBad);
  return t;
}
constexpr auto kClasses = make_classes();

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char upper_hex(char c) { return (c >= 'a' && c <= 'f') ? static_cast<char>(c - 32) : c; }
char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// The byte a valid escape at s[i] ('%' then two hex digits) stands for, or -1.
int escape_at(std::string_view s, size_t i) {
  if (i + 2 >= s.size()) return -1;
  const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// True when the path is already in normal form: nothing to decode or re-case, no empty, "." or
// ".." segment. Most paths are, and take no copy.
bool path_is_normal(std::string_view path) {
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '%') {
      const int v = escape_at(path, i);
      if ((kClasses[static_cast<unsigned char>(v)] & kUnreserved) != 0) return false;
      if (path[i + 1] != upper_hex(path[i + 1]) || path[i + 2] != upper_hex(path[i + 2])) {
        return false;
      }
      i += 2;
    } else if (c == '/' && i + 1 < path.size()) {
      std::string_view rest = path.substr(i + 1);
      if (rest[0] == '/') return false;
      if (rest[0] == '.') {
        if (rest.size() == 1 || rest[1] == '/') return false;
        if (rest[1] == '.' && (rest.size() == 2 || rest[2] == '/')) return false;
      }
    }
  }
  return true;
}

// Appends `segment` (no '/') to `out`, which holds "/seg/seg..." so far, applying "." and "..".
// Returns whether the path now ends in a directory (a '/' is owed at the end).
bool push_segment(std::string& out, std::string_view segment) {
  if (segment.empty() || segment == ".") return true;
  if (segment == "..") {
    out.resize(out.empty() ? 0 : out.rfind('/'));
    return true;
  }
  out.push_back('/');
  out.append(segment);
  return false;
}

std::string_view check_query(std::string_view query) {
  for (size_t i = 0; i < query.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(query[i]);
    if ((kClasses[c] & kQueryBad) != 0) return "invalid character in query";
    if (c == '%') {
      if (escape_at(query, i) < 0) return "invalid percent-encoding in query";
      i += 2;
    }
  }
  return {};
}

// True when a segment of `path` (normal form) is "." or ".." followed by ';' path parameters
// ("/..;/admin", "/.;x/a"). Servlet containers (Tomcat, Jetty) strip a segment's parameters
// before removing dot segments, so they would climb to where routing never looked.
bool has_dot_segment_with_parameters(std::string_view path) {
  for (size_t at = path.find(';'); at != std::string_view::npos; at = path.find(';', at + 1)) {
    const size_t start = path.rfind('/', at) + 1;  // a normal path starts with '/'
    const std::string_view name = path.substr(start, at - start);
    if (name == "." || name == "..") return true;
  }
  return false;
}

}  // namespace

Normalized normalize_target(std::string_view target, std::string& storage) {
  if (target == "*") return {target, {}};
  if (target.empty() || target[0] != '/') return {{}, "request target must start with '/'"};
  const size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q);
  for (size_t i = 0; i < path.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == '%') {
      const int v = escape_at(path, i);
      if (v < 0) return {{}, "invalid percent-encoding in path"};
      if (v == 0) return {{}, "encoded NUL (%00) in path"};
      i += 2;
    } else if ((kClasses[c] & kPathRaw) == 0) {
      return {{}, "invalid character in path"};
    }
  }
  if (std::string_view why = check_query(query); !why.empty()) return {{}, why};
  constexpr std::string_view kDotParameters = "dot segment with ';' parameters in path";
  if (path_is_normal(path)) {
    if (has_dot_segment_with_parameters(path)) return {{}, kDotParameters};
    return {target, {}};
  }

  storage.clear();
  std::string segment;
  bool directory = false;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      directory = push_segment(storage, segment);
      segment.clear();
      continue;
    }
    if (path[i] == '%') {
      const int v = escape_at(path, i);
      if ((kClasses[static_cast<unsigned char>(v)] & kUnreserved) != 0) {
        segment.push_back(static_cast<char>(v));
      } else {
        segment.push_back('%');
        segment.push_back(upper_hex(path[i + 1]));
        segment.push_back(upper_hex(path[i + 2]));
      }
      i += 2;
    } else {
      segment.push_back(path[i]);
    }
  }
  if (storage.empty() || directory) storage.push_back('/');
  if (has_dot_segment_with_parameters(storage)) return {{}, kDotParameters};
  storage.append(query);
  return {storage, {}};
}

std::string_view path_without_parameters(std::string_view path, std::string& storage) {
  if (path.find(';') == std::string_view::npos) return path;
  storage.clear();
  bool in_parameters = false;
  for (char c : path) {
    if (c == '/') in_parameters = false;
    if (c == ';') in_parameters = true;
    if (!in_parameters) storage.push_back(c);
  }
  return storage;
}

Normalized normalize_authority(std::string_view authority, std::string& storage) {
  if (authority.empty()) return {authority, {}};
  std::string_view host = authority, port;
  bool has_port = false;
  if (authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return {{}, "invalid Host: unclosed '['"};
    host = authority.substr(0, close + 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return {{}, "invalid Host: text after the IPv6 address"};
      has_port = true;
      port = rest.substr(1);
    }
    const std::string literal(host.substr(1, host.size() - 2));
    in6_addr addr{};
    if (inet_pton(AF_INET6, literal.c_str(), &addr) != 1) {
      return {{}, "invalid Host: not an IPv6 address"};
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (host.empty()) return {{}, "invalid Host: empty host name"};
  }
  if (port.size() > 5) return {{}, "invalid Host: port out of range"};
  uint32_t port_value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return {{}, "invalid Host: port is not a number"};
    port_value = port_value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port_value > 65535) return {{}, "invalid Host: port out of range"};

  bool normal = host[0] == '[' || host.back() != '.';
  if (host[0] != '[') {
    for (size_t i = 0; i < host.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(host[i]);
      if (c == '%') {
        const int v = escape_at(host, i);
        if (v < 0 || (kClasses[static_cast<unsigned char>(v)] & kUnreserved) == 0) {
          return {{}, "invalid Host: percent-encoded character"};
        }
        normal = false;
        i += 2;
      } else if ((kClasses[c] & kRegName) == 0) {
        return {{}, "invalid Host: character not allowed in a host name"};
      } else if (c >= 'A' && c <= 'Z') {
        normal = false;
      }
    }
  } else {
    for (char c : host) normal = normal && c == lower_ascii(c);
  }
  if (has_port && port.empty()) normal = false;
  if (normal) return {authority, {}};

  storage.clear();
  for (size_t i = 0; i < host.size(); ++i) {
    if (host[i] == '%' && host[0] != '[') {
      storage.push_back(lower_ascii(static_cast<char>(escape_at(host, i))));
      i += 2;
    } else {
      storage.push_back(lower_ascii(host[i]));
    }
  }
  if (host[0] != '[' && storage.size() > 1 && storage.back() == '.') storage.pop_back();
  if (!port.empty()) {
    storage.push_back(':');
    storage.append(port);
  }
  return {storage, {}};
}

}  // namespace weir::routing
