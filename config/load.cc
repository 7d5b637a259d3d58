// TOML → validated Config. The only file that includes toml++; its exceptions stop here.
//
// Error keys use the dotted-index form of config.h: "service[0].version[1].weight",
// "route[2].listener", "proxy.workers". An unknown key reports its own path; a missing key or a
// whole-table problem (duplicate route, zero weights) reports the enclosing table's path and
// location. Errors come back sorted by line and column.
#include "config/config.h"
#include "config/time_zone.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <tuple>
#include <type_traits>

namespace weir::config {
namespace {

constexpr int64_t kMaxTimeoutMs = 86'400'000;
constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

// A value check: returns what is wrong (empty when fine); may normalise the value in place.
using Check = std::function<std::string(std::string&)>;

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Optimal-string-alignment distance, so a swapped pair ("wieght") costs one edit.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// "; did you mean 'x'?" when one candidate is a plausible typo of `word`, else "".
template <typename Range>
std::string suggestion(std::string_view word, const Range& candidates) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& c : candidates) {
    size_t d = edit_distance(lower(word), lower(c));
    if (d < best_distance) best = c, best_distance = d;
  }
  size_t allowed = std::max<size_t>(1, std::min<size_t>(2, best.size() / 3));
  return best_distance <= allowed ? "; did you mean " + quoted(best) + "?" : "";
}

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

// The node type Context::as<T> expects, for its message.
template <typename T>
constexpr toml::node_type type_of() {
  if constexpr (std::is_same_v<T, toml::table>) {
    return toml::node_type::table;
  } else if constexpr (std::is_same_v<T, toml::array>) {
    return toml::node_type::array;
  } else if constexpr (std::is_same_v<T, std::string>) {
    return toml::node_type::string;
  } else if constexpr (std::is_same_v<T, bool>) {
    return toml::node_type::boolean;
  } else if constexpr (std::is_same_v<T, double>) {
    return toml::node_type::floating_point;
  } else {
    static_assert(std::is_same_v<T, int64_t>);
    return toml::node_type::integer;
  }
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// "service[0].version" → "service.version", as written in a [[...]] header.
std::string header_name(std::string_view path) {
  std::string out;
  bool in_index = false;
  for (char c : path) {
    in_index = c == '[' || (in_index && c != ']');
    if (!in_index && c != ']') out += c;
  }
  return out;
}

// The file name and the growing error list for one load.
class Context {
 public:
  explicit Context(std::string file) : file_(std::move(file)) {}

  SourceLoc loc(const toml::source_region& r) const {
    return {file_, static_cast<int>(r.begin.line), static_cast<int>(r.begin.column)};
  }
  void error(const toml::source_region& r, std::string key, std::string message) {
    errors_.push_back({loc(r), std::move(key), std::move(message)});
  }
  void error(SourceLoc loc, std::string key, std::string message) {
    errors_.push_back({std::move(loc), std::move(key), std::move(message)});
  }
  size_t error_count() const { return errors_.size(); }
  // Remembers where `path` was written (Config::locs).
  void note(const std::string& path, const toml::node& node) {
    locs_.try_emplace(path, loc(node.source()));
  }
  std::map<std::string, SourceLoc, std::less<>> take_locs() { return std::move(locs_); }
  std::vector<Error> take_errors() {
    std::stable_sort(errors_.begin(), errors_.end(), [](const Error& a, const Error& b) {
      return std::tie(a.loc.line, a.loc.column) < std::tie(b.loc.line, b.loc.column);
    });
    return std::move(errors_);
  }
  const std::string& file() const { return file_; }

  // Type-checks one node, reporting a mismatch; T is std::string, int64_t, bool, toml::table or
  // toml::array.
  template <typename T>
  const auto* as(const toml::node& node, const std::string& path) {
    note(path, node);
    const auto* typed = node.as<T>();
    if (!typed) {
      error(node.source(), path,
            std::string("expected ") + type_name(type_of<T>()) + ", got " + type_name(node.type()));
    }
    return typed;
  }

  std::optional<int64_t> integer(const toml::node* node, const std::string& path, int64_t lo,
                                 int64_t hi) {
    const auto* v = node ? as<int64_t>(*node, path) : nullptr;
    if (!v) return std::nullopt;
    int64_t n = v->get();
    if (n >= lo && n <= hi) return n;
    std::string range = hi == kNoMax
                            ? "at least " + std::to_string(lo)
                            : "between " + std::to_string(lo) + " and " + std::to_string(hi);
    error(node->source(), path, "must be " + range + ", got " + std::to_string(n));
    return std::nullopt;
  }

  std::optional<std::string> string(const toml::node* node, const std::string& path,
                                    const Check& check) {
    const auto* v = node ? as<std::string>(*node, path) : nullptr;
    if (!v) return std::nullopt;
    std::string s = v->get();
    if (std::string problem = check ? check(s) : ""; !problem.empty()) {
      error(node->source(), path, problem);
      return std::nullopt;
    }
    return s;
  }

 private:
  std::string file_;
  std::vector<Error> errors_;
  std::map<std::string, SourceLoc, std::less<>> locs_;
};

enum class Need { kOptional, kRequired };

// Reads one TOML table. Every key asked for becomes known, so finish() can report the others as
// unknown and suggest the closest known one.
class TableReader {
 public:
  TableReader(Context& ctx, const toml::table& table, std::string path)
      : ctx_(ctx), table_(table), path_(std::move(path)) {}

  std::string path(std::string_view key) const { return join(path_, key); }
  const toml::table& table() const { return table_; }
  const std::string& path() const { return path_; }
  SourceLoc loc() const { return ctx_.loc(table_.source()); }

  const toml::node* find(std::string_view key, Need need) {
    known_.emplace(key);
    const toml::node* node = table_.get(key);
    if (node) ctx_.note(path(key), *node);
    if (!node && need == Need::kRequired) {
      ctx_.error(table_.source(), path(key),
                 "missing required key " + quoted(key) + "; add it to this table");
    }
    return node;
  }

  // Each returns true when the key was present and valid; `out` is left untouched otherwise.
  template <typename T>
  bool integer(std::string_view key, T& out, int64_t lo, int64_t hi, Need need = Need::kOptional) {
    auto v = ctx_.integer(find(key, need), path(key), lo, hi);
    if (v) out = static_cast<T>(*v);
    return v.has_value();
  }
  bool boolean(std::string_view key, bool& out) {
    const toml::node* node = find(key, Need::kOptional);
    const auto* v = node ? ctx_.as<bool>(*node, path(key)) : nullptr;
    if (v) out = v->get();
    return v != nullptr;
  }
  // A float or an integer within [lo, hi].
  bool number(std::string_view key, double& out, double lo, double hi) {
    const toml::node* node = find(key, Need::kOptional);
    if (!node) return false;
    std::optional<double> v;
    if (node->is_integer()) {
      v = static_cast<double>(node->as_integer()->get());
    } else if (node->is_floating_point()) {
      v = node->as_floating_point()->get();
    } else {
      ctx_.error(node->source(), path(key),
                 "expected a number, got " + std::string(type_name(node->type())));
      return false;
    }
    if (!(*v >= lo && *v <= hi)) {
      auto show = [](double d) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", d);
        return std::string(buf);
      };
      ctx_.error(node->source(), path(key),
                 "must be between " + show(lo) + " and " + show(hi) + ", got " + show(*v));
      return false;
    }
    out = *v;
    return true;
  }
  bool string(std::string_view key, std::string& out, Need need, const Check& check = {}) {
    auto v = ctx_.string(find(key, need), path(key), check);
    if (v) out = std::move(*v);
    return v.has_value();
  }
  template <typename T>
  const auto* typed(std::string_view key, Need need) {
    const toml::node* node = find(key, need);
    return node ? ctx_.as<T>(*node, path(key)) : nullptr;
  }

  void finish() {
    for (const auto& [key, node] : table_) {
      if (known_.count(key.str())) continue;
      ctx_.error(key.source(), path(key.str()),
                 "unknown key " + quoted(key.str()) + suggestion(key.str(), known_));
    }
  }

 private:
  Context& ctx_;
  const toml::table& table_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

// Calls read(reader, index) for each table of the array `key` (usually [[key]]), then reports
// that table's unknown keys. A missing or empty array is an error when `empty_message` is set.
template <typename Fn>
void each_table(Context& ctx, TableReader& parent, std::string_view key, const char* empty_message,
                Fn read) {
  const toml::node* node = parent.find(key, Need::kOptional);
  const toml::array* array = node ? node->as_array() : nullptr;
  if (node && !array) {
    ctx.error(node->source(), parent.path(key),
              "expected an array of tables ([[" + header_name(parent.path(key)) + "]]), got " +
                  type_name(node->type()));
    return;
  }
  if (!array || array->empty()) {
    if (empty_message)
      ctx.error(node ? ctx.loc(node->source()) : parent.loc(), parent.path(key), empty_message);
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const std::string path = indexed(parent.path(key), i);
    if (const auto* table = ctx.as<toml::table>(*array->get(i), path)) {
      TableReader reader(ctx, *table, path);
      read(reader, i);
      reader.finish();
    }
  }
}

// --- Value checks ---------------------------------------------------------------------------

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

// RFC 9110 tchar.
bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

std::string check_name(std::string& s) {
  if (s.empty()) return "must not be empty; use letters, digits, '_', '.' or '-'";
  if (!std::all_of(s.begin(), s.end(), is_name_char))
    return quoted(s) + " may contain only letters, digits, '_', '.' and '-'";
  return "";
}

// A name that must also be unique among `seen` (which it joins when valid).
Check unique_name(std::set<std::string>& seen, std::string what) {
  return [&seen, what = std::move(what)](std::string& s) {
    if (std::string problem = check_name(s); !problem.empty()) return problem;
    if (!seen.insert(s).second)
      return what + " " + quoted(s) + " is defined twice; give each " + what + " a unique name";
    return std::string();
  };
}

// "no listener named 'x'" plus either a likely fix or the names that do exist.
std::string no_such(std::string_view what, const std::string& name,
                    const std::set<std::string>& known) {
  std::string hint = suggestion(name, known);
  if (hint.empty()) {
    hint = "; known " + std::string(what) + "s:";
    for (const std::string& k : known) hint += " " + quoted(k);
    if (known.empty()) hint = "; define a [[" + std::string(what) + "]] with that name";
  }
  return "no " + std::string(what) + " named " + quoted(name) + hint;
}

// A name that must refer to one of `known`.
Check reference(const std::set<std::string>& known, std::string what) {
  return [&known, what = std::move(what)](std::string& s) {
    return known.count(s) ? std::string() : no_such(what, s, known);
  };
}

Check token(bool lower_case) {
  return [lower_case](std::string& s) {
    if (!std::all_of(s.begin(), s.end(), is_token_char))
      return quoted(s) + " is not an HTTP token; use letters, digits and !#$%&'*+-.^_`|~, or" +
             " \"\" to disable";
    if (lower_case) s = lower(s);
    return std::string();
  };
}

bool is_host_name(std::string_view h) {
  return !h.empty() && std::all_of(h.begin(), h.end(), is_name_char);
}

bool is_ipv6_literal(std::string_view h) {
  return h.find(':') != std::string_view::npos && std::all_of(h.begin(), h.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
         });
}

// Why `s` is not a host:port, or "" (then `out` is filled).
std::string split_host_port(std::string_view s, bool allow_port_zero, HostPort& out) {
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return "missing ':port'";
  std::string_view host = s.substr(0, colon);
  std::string_view port = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (!is_ipv6_literal(host)) return "'[" + std::string(host) + "]' is not an IPv6 address";
  } else if (host.find(':') != std::string_view::npos) {
    return "an IPv6 address needs brackets, as in \"[::1]:80\"";
  } else if (!is_host_name(host)) {
    return host.empty() ? "missing host" : quoted(host) + " is not a valid host name";
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return "port " + quoted(port) + " is not a number";
  unsigned long n = std::stoul(std::string(port));
  unsigned long min_port = allow_port_zero ? 0 : 1;
  if (n < min_port || n > 65535)
    return "port must be between " + std::to_string(min_port) + " and 65535";
  out = {std::string(host), static_cast<uint16_t>(n)};
  return "";
}

Check address(bool allow_port_zero, HostPort& out) {
  return [allow_port_zero, &out](std::string& s) {
    std::string why = split_host_port(s, allow_port_zero, out);
    if (why.empty()) return why;
    return quoted(s) + " is not a valid address (" + why + "); write \"host:port\" or" +
           " \"[v6]:port\"";
  };
}

std::string check_route_host(std::string& s) {
  s = lower(s);
  std::string_view name = s;
  if (name.starts_with("*.")) name.remove_prefix(2);
  if (s == "*" || is_host_name(name)) return "";
  if (name.size() > 2 && name.front() == '[' && name.back() == ']' &&
      is_ipv6_literal(name.substr(1, name.size() - 2)))
    return "";
  if (name.find(':') != std::string_view::npos)
    return quoted(s) + " must not include a port (IPv6 addresses need brackets)";
  return quoted(s) + " is not a valid host; use \"*\", \"*.example.com\" or an exact host name";
}

std::string check_path_prefix(std::string& s) {
  if (!s.starts_with('/')) return quoted(s) + " must start with '/'";
  if (std::any_of(s.begin(), s.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
    return quoted(s) + " must not contain spaces or control characters; percent-encode them";
  return "";
}

// --- Sections -------------------------------------------------------------------------------

void read_proxy(TableReader& t, ProxySettings& p) {
  p.loc = t.loc();
  t.integer("workers", p.workers, 0, 256);
  t.integer("connect_timeout_ms", p.connect_timeout_ms, 1, kMaxTimeoutMs);
  t.integer("request_header_timeout_ms", p.request_header_timeout_ms, 1, kMaxTimeoutMs);
  t.integer("body_timeout_ms", p.body_timeout_ms, 1, kMaxTimeoutMs);
  t.integer("upstream_response_timeout_ms", p.upstream_response_timeout_ms, 1, kMaxTimeoutMs);
  t.integer("keepalive_timeout_ms", p.keepalive_timeout_ms, 1, kMaxTimeoutMs);
  t.integer("drain_timeout_ms", p.drain_timeout_ms, 0, kMaxTimeoutMs);
  t.integer("upstream_idle_timeout_ms", p.upstream_idle_timeout_ms, 1, kMaxTimeoutMs);
  t.integer("max_header_bytes", p.max_header_bytes, 1024, 1048576);
  t.integer("max_headers", p.max_headers, 1, 10000);
  t.integer("max_request_line", p.max_request_line, 256, 1048576);
  t.integer("max_request_body_bytes", p.max_request_body_bytes, 0, kNoMax);
  t.integer("upstream_max_idle", p.upstream_max_idle, 0, 100000);
  t.string("via", p.via, Need::kOptional, token(false));
  t.string("request_id_header", p.request_id_header, Need::kOptional, token(true));
  t.string("access_log", p.access_log, Need::kOptional);
  t.string("version_header", p.version_header, Need::kOptional, token(true));
}

// "text" or "json" for `key`.
void read_log_format(TableReader& t, std::string_view key, LogSettings::Format& out) {
  std::string name = out == LogSettings::Format::kJson ? "json" : "text";
  t.string(key, name, Need::kOptional, [](std::string& v) {
    return v == "text" || v == "json" ? std::string()
                                      : quoted(v) + " is not a log format; use \"text\" or \"json\"";
  });
  out = name == "json" ? LogSettings::Format::kJson : LogSettings::Format::kText;
}

void read_log(Context& ctx, TableReader& t, LogSettings& l) {
  l.loc = t.loc();
  read_log_format(t, "format", l.format);
  read_log_format(t, "access_format", l.access_format);
  const auto* fields = t.typed<toml::array>("access_fields", Need::kOptional);
  if (!fields) return;
  l.access_fields.clear();
  std::set<std::string> seen;
  for (size_t i = 0; i < fields->size(); ++i) {
    const std::string path = indexed(t.path("access_fields"), i);
    ctx.string(fields->get(i), path, [&](std::string& v) {
      const auto* names = std::begin(kAccessFieldNames);
      const auto* found = std::find(names, std::end(kAccessFieldNames), v);
      if (found == std::end(kAccessFieldNames))
        return quoted(v) + " is not an access log field" +
               suggestion(v, std::vector<std::string>(names, std::end(kAccessFieldNames)));
      if (!seen.insert(v).second) return quoted(v) + " is listed twice; keep one";
      l.access_fields.push_back(static_cast<AccessField>(found - names));
      return std::string();
    });
  }
  if (fields->empty()) {
    ctx.error(fields->source(), t.path("access_fields"),
              "lists no field; name at least one (e.g. \"status\") or remove the key for the "
              "default set");
  }
}

void read_admin(TableReader& t, AdminSettings& a) {
  a.enabled = true;
  a.loc = t.loc();
  std::string text;  // kept only as a.address
  t.string("address", text, Need::kOptional, address(true, a.address));
  t.string("tokens_file", a.tokens_file, Need::kRequired, [](std::string& s) {
    return s.empty() ? std::string("must name a file of [[token]] tables") : std::string();
  });
  t.string("state_dir", a.state_dir, Need::kOptional);
  t.boolean("open_healthz", a.open_healthz);
  t.boolean("open_metrics", a.open_metrics);
}

std::string check_sha256_hex(std::string& s) {
  s = lower(s);
  if (s.size() != 64 || !std::all_of(s.begin(), s.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
      }))
    return "must be the 64 hex digits of the token's SHA-256 (e.g. `printf %s TOKEN | "
           "sha256sum`)";
  return "";
}

// The tokens file: [[token]] tables with name, scope and sha256. Errors name the tokens file.
void read_tokens(Context& ctx, const toml::table& root, std::vector<AdminToken>& out) {
  TableReader top(ctx, root, "");
  std::set<std::string> names, digests;
  each_table(ctx, top, "token", "no [[token]] defined; add one with name, scope and sha256",
             [&](TableReader& t, size_t) {
               AdminToken& tok = out.emplace_back();
               tok.loc = t.loc();
               t.string("name", tok.name, Need::kRequired, unique_name(names, "token"));
               // "read", "write", "approve", or a list of them (["write", "approve"]).
               auto scope_check = [](std::string& s) {
                 return s == "read" || s == "write" || s == "approve"
                            ? std::string()
                            : quoted(s) + " is not a scope; use \"read\", \"write\" or "
                                          "\"approve\" (or a list such as [\"write\", "
                                          "\"approve\"])";
               };
               auto take = [&](const std::string& scope) {
                 if (scope == "write") tok.scope = AdminToken::Scope::kWrite;
                 if (scope == "approve") tok.approve = true;
               };
               const toml::node* sn = t.find("scope", Need::kRequired);
               if (sn && sn->is_array()) {
                 const auto& list = *sn->as_array();
                 if (list.empty())
                   ctx.error(sn->source(), t.path("scope"), "needs at least one scope");
                 for (size_t i = 0; i < list.size(); ++i) {
                   if (auto sc = ctx.string(list.get(i), indexed(t.path("scope"), i), scope_check))
                     take(*sc);
                 }
               } else if (sn) {
                 if (auto sc = ctx.string(sn, t.path("scope"), scope_check)) take(*sc);
               }
               std::string hex;
               if (t.string("sha256", hex, Need::kRequired, [&](std::string& s) {
                     if (std::string why = check_sha256_hex(s); !why.empty()) return why;
                     if (!digests.insert(s).second)
                       return std::string("the same token is listed twice; give each one its own");
                     return std::string();
                   })) {
                 for (size_t i = 0; i < 32; ++i)
                   tok.sha256[i] = static_cast<uint8_t>(std::stoul(hex.substr(i * 2, 2), nullptr, 16));
               }
             });
  top.finish();
}

void read_endpoints(Context& ctx, TableReader& t, std::vector<HostPort>& out) {
  const auto* array = t.typed<toml::array>("endpoints", Need::kRequired);
  if (!array) return;
  if (array->empty()) {
    ctx.error(array->source(), t.path("endpoints"),
              "needs at least one endpoint, e.g. [\"127.0.0.1:9001\"]");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < array->size(); ++i) {
    HostPort hp;
    const std::string path = indexed(t.path("endpoints"), i);
    if (!ctx.string(array->get(i), path, address(false, hp))) continue;
    if (seen.insert(hp.to_string()).second) {
      out.push_back(std::move(hp));
    } else {
      ctx.error(array->get(i)->source(), path,
                "endpoint " + quoted(hp.to_string()) + " is listed twice; remove one");
    }
  }
}

// Reads an optional sub-table `key` of `parent` with read(reader); true when it was present.
template <typename Fn>
bool sub_table(Context& ctx, TableReader& parent, std::string_view key, Fn read) {
  const auto* table = parent.typed<toml::table>(key, Need::kOptional);
  if (!table) return false;
  TableReader reader(ctx, *table, parent.path(key));
  read(reader);
  reader.finish();
  return true;
}

// One expected_status element: 200, or "200-299".
std::optional<StatusRange> status_range(Context& ctx, const toml::node& node,
                                        const std::string& path) {
  auto in_range = [](int64_t v) { return v >= 100 && v <= 599; };
  if (const auto* n = node.as<int64_t>()) {
    if (in_range(n->get())) return StatusRange{uint16_t(n->get()), uint16_t(n->get())};
  } else if (const auto* str = node.as<std::string>()) {
    // Exactly three digits, '-', three digits: sscanf's %u would take signs, spaces and values
    // that wrap around (4294967496 is 200 as an unsigned int).
    const std::string& text = str->get();
    auto code = [&](size_t at) -> int64_t {
      int64_t v = 0;
      for (size_t i = at; i < at + 3; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) return -1;
        v = v * 10 + (text[i] - '0');
      }
      return v;
    };
    if (text.size() == 7 && text[3] == '-') {
      const int64_t lo = code(0), hi = code(4);
      if (in_range(lo) && in_range(hi) && lo <= hi) return StatusRange{uint16_t(lo), uint16_t(hi)};
    }
  }
  ctx.error(node.source(), path,
            "expected a status code (100-599) or a range such as \"200-299\"");
  return std::nullopt;
}

// Reads health-check keys over `hc` (which holds the defaults, or the service's settings when
// this is a version's override) and enables it unless `enabled = false`.
void read_health_check(Context& ctx, TableReader& t, HealthCheck& hc) {
  hc.enabled = true;
  t.boolean("enabled", hc.enabled);
  t.string("path", hc.path, Need::kOptional, check_path_prefix);
  t.string("host", hc.host, Need::kOptional, [](std::string& s) {
    HostPort ignored;
    return is_host_name(s) || split_host_port(s, false, ignored).empty()
               ? std::string()
               : quoted(s) + " is not a host name or host:port";
  });
  t.integer("interval_ms", hc.interval_ms, 10, kMaxTimeoutMs);
  t.integer("timeout_ms", hc.timeout_ms, 1, kMaxTimeoutMs);
  t.integer("jitter_ms", hc.jitter_ms, 0, kMaxTimeoutMs);
  t.integer("healthy_threshold", hc.healthy_threshold, 1, 1000);
  t.integer("unhealthy_threshold", hc.unhealthy_threshold, 1, 1000);
  if (const auto* list = t.typed<toml::array>("expected_status", Need::kOptional)) {
    std::vector<StatusRange> ranges;
    for (size_t i = 0; i < list->size(); ++i) {
      if (auto r = status_range(ctx, *list->get(i), indexed(t.path("expected_status"), i)))
        ranges.push_back(*r);
    }
    if (list->empty()) {
      ctx.error(list->source(), t.path("expected_status"),
                "needs at least one status, e.g. [200, \"300-399\"]");
    } else {
      hc.expected_status = std::move(ranges);
    }
  }
}

void read_sticky(Context& ctx, TableReader& t, Sticky& sticky) {
  int sources = 0;
  if (t.string("header", sticky.name, Need::kOptional, token(true))) {
    sticky.source = Sticky::Source::kHeader;
    ++sources;
  }
  std::string cookie;
  if (t.string("cookie", cookie, Need::kOptional, token(false))) {
    sticky.source = Sticky::Source::kCookie;
    sticky.name = cookie;
    ++sources;
  }
  bool client_ip = false;
  if (t.boolean("client_ip", client_ip) && client_ip) {
    sticky.source = Sticky::Source::kClientIp;
    ++sources;
  }
  t.string("salt", sticky.salt, Need::kOptional);
  if (sources != 1) {
    ctx.error(t.loc(), t.path(),
              "set exactly one of header = \"...\", cookie = \"...\" or client_ip = true");
  }
}

void read_guard(Context& ctx, TableReader& t, GuardConfig& g) {
  g.loc = t.loc();
  g.enabled = true;
  t.boolean("enabled", g.enabled);
  t.integer("interval_ms", g.interval_ms, 100, kMaxTimeoutMs);
  t.integer("window_s", g.window_s, 1, 600);
  t.integer("min_requests", g.min_requests, 1, kNoMax);
  t.number("max_error_rate", g.max_error_rate, 0, 1);
  t.integer("max_p99_ms", g.max_p99_ms, 1, kMaxTimeoutMs);
  t.integer("max_p50_ms", g.max_p50_ms, 1, kMaxTimeoutMs);
  t.number("max_error_rate_increase", g.max_error_rate_increase, 0, 1);
  t.number("max_p99_ratio", g.max_p99_ratio, 1, 1000);
  t.number("confidence", g.confidence, 0.5, 0.9999);
  t.integer("consecutive", g.consecutive, 1, 1000);
  t.integer("revert_ramp_ms", g.revert_ramp_ms, 0, kMaxTimeoutMs);
  t.number("min_latency_increase_ms", g.min_latency_increase_ms, 0, kMaxTimeoutMs);
  t.number("latency_confidence", g.latency_confidence, 0.5, 0.9999);
  if (const toml::node* dry = t.find("dry_run", Need::kOptional)) {
    static const std::set<std::string> kRules = {
        "max_error_rate", "max_error_rate_increase", "max_p99_ms", "max_p50_ms",
        "max_p99_ratio", "min_latency_increase_ms"};
    if (const auto* b = dry->as_boolean()) {
      g.dry_run_all = b->get();
    } else if (const auto* list = dry->as_array()) {
      for (size_t i = 0; i < list->size(); ++i) {
        const std::string path = indexed(t.path("dry_run"), i);
        auto rule = ctx.string(list->get(i), path, [](std::string& r) {
          return kRules.count(r) ? std::string()
                                 : quoted(r) + " is not a guard rule" + suggestion(r, kRules) +
                                       " (max_error_rate, max_error_rate_increase, max_p99_ms, "
                                       "max_p50_ms, max_p99_ratio, min_latency_increase_ms)";
        });
        if (rule) g.dry_run.push_back(*rule);
      }
    } else {
      ctx.error(dry->source(), t.path("dry_run"),
                "expected true/false (the whole guard) or a list of rules, e.g. "
                "[\"max_p99_ms\"], got " + std::string(type_name(dry->type())));
    }
  }
}

// "Mon-Fri 09:00-16:00 Europe/Berlin": days (names, ranges, lists, or "daily"), a local time
// span, and an optional zone (UTC when left out). "" or what is wrong.
std::string parse_change_window(const std::string& text, ChangeWindow* out) {
  static constexpr std::string_view kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
  const std::string usage =
      quoted(text) + " is not a change window; write days, a time span and a zone, e.g. "
                     "\"Mon-Fri 09:00-16:00 Europe/Berlin\" or \"daily 22:00-02:00 UTC\"";
  std::vector<std::string> words;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find(' ', at);
    if (end == std::string::npos) end = text.size();
    if (end > at) words.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  if (words.size() < 2 || words.size() > 3) return usage;
  out->text = text;
  auto day = [&](std::string_view d) -> int {
    for (size_t i = 0; i < 7; ++i) {
      if (lower(d) == kDays[i]) return static_cast<int>(i);
    }
    return -1;
  };
  out->days = 0;
  if (lower(words[0]) == "daily") {
    out->days = 0x7f;
  } else {
    std::string_view list = words[0];
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      size_t dash = item.find('-');
      int from = day(item.substr(0, dash));
      int to = dash == std::string_view::npos ? from : day(item.substr(dash + 1));
      if (from < 0 || to < 0)
        return quoted(std::string(item)) + " is not a day or a range of days (Mon, Tue, Wed, Thu, "
               "Fri, Sat, Sun, e.g. Mon-Fri or Mon,Wed; or daily)";
      for (int d = from;; d = (d + 1) % 7) {
        out->days = static_cast<uint8_t>(out->days | (1u << d));
        if (d == to) break;
      }
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  auto minute = [](std::string_view hm) -> int {
    if (hm.size() != 5 || hm[2] != ':' || !std::isdigit(static_cast<unsigned char>(hm[0])) ||
        !std::isdigit(static_cast<unsigned char>(hm[1])) ||
        !std::isdigit(static_cast<unsigned char>(hm[3])) ||
        !std::isdigit(static_cast<unsigned char>(hm[4])))
      return -1;
    int h = (hm[0] - '0') * 10 + (hm[1] - '0'), m = (hm[3] - '0') * 10 + (hm[4] - '0');
    if (h > 24 || m > 59 || (h == 24 && m != 0)) return -1;
    return h * 60 + m;
  };
  std::string_view span = words[1];
  size_t dash = span.find('-');
  int start = dash == std::string_view::npos ? -1 : minute(span.substr(0, dash));
  int end = dash == std::string_view::npos ? -1 : minute(span.substr(dash + 1));
  if (start < 0 || end < 0)
    return quoted(std::string(span)) + " is not a time span; write HH:MM-HH:MM, e.g. 09:00-16:00";
  if (start == end) return quoted(std::string(span)) + " is empty; the end must differ from the start";
  if (start == 24 * 60) return quoted(std::string(span)) + " starts at 24:00; start at 00:00";
  out->start_min = static_cast<uint32_t>(start);
  out->end_min = static_cast<uint32_t>(end == 24 * 60 ? 0 : end);
  if (end == 24 * 60 && start == 0) out->end_min = 24 * 60;  // all day
  out->zone = words.size() == 3 ? words[2] : "UTC";
  return "";
}

void read_rollout(Context& ctx, TableReader& t, const std::set<std::string>& versions,
                  const std::string& stable, RolloutConfig& r) {
  r.loc = t.loc();
  r.present = true;
  if (t.string("version", r.version, Need::kRequired, check_name)) {
    if (!versions.count(r.version)) {
      ctx.error(t.find("version", Need::kOptional)->source(), t.path("version"),
                no_such("version", r.version, versions));
    } else if (r.version == stable) {
      ctx.error(t.find("version", Need::kOptional)->source(), t.path("version"),
                "the stable version cannot be rolled out; name the new version");
    }
  }
  if (const auto* steps = t.typed<toml::array>("steps", Need::kRequired)) {
    uint32_t last_weight = 0;
    for (size_t i = 0; i < steps->size(); ++i) {
      const toml::node& node = *steps->get(i);
      const std::string path = indexed(t.path("steps"), i);
      ctx.note(path, node);
      RolloutStep step;
      step.loc = ctx.loc(node.source());
      bool ok = true;
      if (node.is_string()) {
        if (node.as_string()->get() != "pause") {
          ctx.error(node.source(), path,
                    "a step is a weight (1..100), \"pause\" (until resumed) or a table such as "
                    "{pause_s = 600} or {weight = 25, step_s = 120}");
          continue;
        }
        step.pause = true;
      } else if (const auto* table = node.as_table()) {
        TableReader st(ctx, *table, path);
        const bool weighted = st.integer("weight", step.weight, 1, 100);
        st.integer("step_s", step.step_s, 1, 86400);
        const bool paused = st.integer("pause_s", step.pause_s, 1, 86400 * 7);
        st.finish();
        if (weighted == paused) {
          ctx.error(node.source(), path,
                    "a step table has either weight (with an optional step_s) or pause_s");
          ok = false;
        } else if (paused && st.find("step_s", Need::kOptional)) {
          ctx.error(node.source(), path, "a pause has no step_s; its length is pause_s");
          ok = false;
        }
        step.pause = paused;
      } else {
        auto v = ctx.integer(&node, path, 1, 100);
        if (!v) continue;
        step.weight = static_cast<uint32_t>(*v);
      }
      if (!ok) continue;
      if (step.pause) {
        if (!r.steps.empty() && r.steps.back().pause) {
          ctx.error(node.source(), path, "two pauses in a row; make them one");
        }
        if (i + 1 == steps->size()) {
          ctx.error(node.source(), path,
                    "a pause cannot be the last step: the last step is 100 (promotion)");
        }
      } else {
        if (step.weight <= last_weight && !r.steps.empty()) {
          ctx.error(node.source(), path, "steps must increase, e.g. [1, 5, 25, 50, 100]");
        }
        if (step.weight == 100 && step.step_s) {
          ctx.error(node.source(), path, "the promotion (100) has no step_s: nothing bakes after it");
        }
        last_weight = step.weight;
      }
      r.steps.push_back(std::move(step));
    }
    // A pause at the end has its own error.
    if (r.steps.empty() || (!r.steps.back().pause && r.steps.back().weight != 100)) {
      ctx.error(steps->source(), t.path("steps"), "the last step must be 100 (promotion)");
    }
  }
  t.integer("step_s", r.step_s, 1, 86400);
  t.integer("max_step_s", r.max_step_s, 1, 86400 * 7);
  t.boolean("auto_start", r.auto_start);
  if (r.max_step_s < r.step_s) {
    ctx.error(r.loc, t.path("max_step_s"), "must be at least step_s");
  }
  for (size_t i = 0; i < r.steps.size(); ++i) {
    if (!r.steps[i].pause && r.steps[i].step_s > r.max_step_s)
      ctx.error(r.steps[i].loc, indexed(t.path("steps"), i),
                "step_s " + std::to_string(r.steps[i].step_s) + " is above max_step_s " +
                    std::to_string(r.max_step_s) + ": the step would pause before it passed");
  }
  t.integer("approvals", r.approvals, 0, 10);
  t.integer("success_after", r.success_after, 1, kNoMax);
  if (const auto* list = t.typed<toml::array>("windows", Need::kOptional)) {
    if (list->empty())
      ctx.error(list->source(), t.path("windows"),
                "needs at least one window, e.g. [\"Mon-Fri 09:00-16:00 Europe/Berlin\"]; "
                "remove the key to allow any time");
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string path = indexed(t.path("windows"), i);
      const auto* text = ctx.as<std::string>(*list->get(i), path);
      if (!text) continue;
      ChangeWindow w;
      w.loc = ctx.loc(text->source());
      if (std::string why = parse_change_window(text->get(), &w); !why.empty()) {
        ctx.error(text->source(), path, why);
        continue;
      }
      std::string why;
      w.tz = TimeZone::load(w.zone, &why);
      if (!w.tz) {
        ctx.error(text->source(), path, why);
        continue;
      }
      r.windows.push_back(std::move(w));
    }
  }
}

// A file path, made absolute against the config file's folder.
Check file_path(const std::string& config_file) {
  return [&config_file](std::string& s) {
    if (s.empty()) return std::string("must not be empty; give a file path");
    size_t slash = config_file.rfind('/');
    if (s.front() != '/' && slash != std::string::npos) s = config_file.substr(0, slash + 1) + s;
    return std::string();
  };
}

// Reads upstream TLS keys over `tls` (the defaults, or the service's settings when this is a
// version's override) and enables it unless `enabled = false`.
void read_upstream_tls(Context& ctx, TableReader& t, UpstreamTls& tls) {
  tls.enabled = true;
  tls.loc = t.loc();
  t.boolean("enabled", tls.enabled);
  t.string("sni", tls.sni, Need::kOptional, [](std::string& s) {
    s = lower(s);
    return is_host_name(s) ? std::string()
                           : quoted(s) + " is not a host name; sni names a DNS host";
  });
  t.boolean("verify", tls.verify);
  auto file = [&](std::string_view key, std::string& out, SourceLoc& loc) {
    if (t.string(key, out, Need::kOptional, file_path(ctx.file())))
      loc = ctx.loc(t.find(key, Need::kOptional)->source());
  };
  file("ca_file", tls.ca_file, tls.ca_loc);
  file("cert", tls.cert, tls.cert_loc);
  file("key", tls.key, tls.key_loc);
  if (tls.cert.empty() != tls.key.empty()) {
    ctx.error(tls.loc, t.path(tls.cert.empty() ? "cert" : "key"),
              "a client certificate needs both cert and key; add the missing one");
  }
}

int read_text(const std::string& path, std::string& text);

// Why `s` is not an http(s) URL with a host (and optional port and path), or "".
std::string check_http_url(std::string& s) {
  const bool https = s.starts_with("https://");
  if (!https && !s.starts_with("http://"))
    return quoted(s) + " is not an http:// or https:// URL";
  std::string_view rest = std::string_view(s).substr(https ? 8 : 7);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  HostPort hp;
  std::string why;
  if (authority.empty()) {
    why = "missing host";
  } else if (authority.back() == ']' || authority.find(':') == std::string_view::npos) {
    why = split_host_port(std::string(authority) + ":1", false, hp);
  } else {
    why = split_host_port(authority, false, hp);
  }
  if (!why.empty()) return quoted(s) + ": " + why + " (e.g. http://127.0.0.1:9090)";
  if (rest.find('#') != std::string_view::npos || rest.find(' ') != std::string_view::npos)
    return quoted(s) + ": a URL sent on the wire has no fragment or space";
  return "";
}

// The url, TLS files, timeout and headers an outgoing call needs ([[service.hook]],
// [[service.guard.query]]). Header values: a string, or { from_file = "path" } /
// { from_env = "NAME" } with an optional prefix ("Bearer "), read now.
void read_target(Context& ctx, TableReader& t, OutgoingTarget& out) {
  t.string("url", out.url, Need::kRequired, check_http_url);
  auto file = [&](std::string_view key, std::string& v) {
    t.string(key, v, Need::kOptional, file_path(ctx.file()));
  };
  file("ca_file", out.ca_file);
  file("cert", out.cert);
  file("key", out.key);
  t.boolean("verify", out.verify);
  t.integer("timeout_ms", out.timeout_ms, 1, 600000);
  if (out.cert.empty() != out.key.empty())
    ctx.error(t.loc(), t.path(out.cert.empty() ? "cert" : "key"),
              "a client certificate needs both cert and key; add the missing one");
  if ((!out.ca_file.empty() || !out.cert.empty()) && out.url.starts_with("http://"))
    ctx.error(t.loc(), t.path(out.ca_file.empty() ? "cert" : "ca_file"),
              "TLS settings need an https:// url");
  const auto* headers = t.typed<toml::table>("headers", Need::kOptional);
  if (!headers) return;
  for (const auto& [key, node] : *headers) {
    const std::string path = t.path("headers." + std::string(key.str()));
    ctx.note(path, node);
    HookHeader h;
    h.name = std::string(key.str());
    if (h.name.empty() || !std::all_of(h.name.begin(), h.name.end(), is_token_char)) {
      ctx.error(key.source(), path, quoted(h.name) + " is not an HTTP header name");
      continue;
    }
    const std::string lname = lower(h.name);
    if (lname == "host" || lname == "content-length" || lname == "transfer-encoding" ||
        lname == "connection") {
      ctx.error(key.source(), path, "weir sets " + quoted(h.name) + " itself; remove it");
      continue;
    }
    if (node.is_string()) {
      h.value = node.as_string()->get();
    } else if (const auto* ref = node.as_table()) {
      TableReader rt(ctx, *ref, path);
      std::string prefix;
      const bool by_file = rt.string("from_file", h.from, Need::kOptional, file_path(ctx.file()));
      const bool by_env = rt.string("from_env", h.from, Need::kOptional, check_name);
      rt.string("prefix", prefix, Need::kOptional);
      rt.finish();
      if (by_file == by_env) {
        ctx.error(node.source(), path,
                  "give exactly one of from_file = \"path\" or from_env = \"NAME\"");
        continue;
      }
      std::string secret;
      if (by_file) {
        h.source = HookHeader::Source::kFile;
        if (int err = read_text(h.from, secret); err != 0) {
          ctx.error(node.source(), path, "cannot read " + h.from + ": " + std::strerror(err));
          continue;
        }
        while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back())))
          secret.pop_back();
      } else {
        h.source = HookHeader::Source::kEnv;
        const char* v = std::getenv(h.from.c_str());
        if (!v) {
          ctx.error(node.source(), path,
                    "environment variable " + h.from + " is not set; set it or use from_file");
          continue;
        }
        secret = v;
      }
      h.value = prefix + secret;
    } else {
      ctx.error(node.source(), path,
                std::string("expected a string or a table {from_file = ...}, got ") +
                    type_name(node.type()));
      continue;
    }
    if (std::any_of(h.value.begin(), h.value.end(), [](char c) {
          return c == '\r' || c == '\n' || c == '\0';
        })) {
      // The value itself is never shown: it may be a secret.
      ctx.error(node.source(), path, "the header value holds a line break or NUL");
      continue;
    }
    out.headers.push_back(std::move(h));
  }
}

const char* const kHookTypes[] = {"event",           "pre-rollout",
                                  "rollout",         "confirm-rollout",
                                  "confirm-traffic-increase", "confirm-promotion",
                                  "post-rollout",    "rollback"};

void read_hook(Context& ctx, TableReader& t, std::set<std::string>& names, Hook& h) {
  h.loc = t.loc();
  t.string("name", h.name, Need::kRequired, unique_name(names, "hook"));
  std::string type;
  if (t.string("type", type, Need::kRequired, [](std::string& v) {
        for (const char* k : kHookTypes) {
          if (v == k) return std::string();
        }
        std::string known;
        for (const char* k : kHookTypes) known += (known.empty() ? "" : ", ") + std::string(k);
        return quoted(v) + " is not a hook type; use one of " + known;
      })) {
    for (size_t i = 0; i < std::size(kHookTypes); ++i) {
      if (type == kHookTypes[i]) h.type = static_cast<Hook::Type>(i);
    }
  }
  read_target(ctx, t, h.target);
  t.integer("retries", h.retries, 0, 100);
  t.integer("backoff_ms", h.backoff_ms, 1, kMaxTimeoutMs);
  t.integer("interval_ms", h.interval_ms, 100, kMaxTimeoutMs);
  if (t.integer("threshold", h.threshold, 1, 1000) && h.type != Hook::Type::kPreRollout)
    ctx.error(t.find("threshold", Need::kOptional)->source(), t.path("threshold"),
              "threshold applies to pre-rollout hooks only");
  std::string format = "json";
  if (t.string("format", format, Need::kOptional, [](std::string& v) {
        return v == "json" || v == "slack"
                   ? std::string()
                   : quoted(v) + " is not a hook format; use \"json\" or \"slack\"";
      })) {
    h.slack = format == "slack";
    if (h.type != Hook::Type::kEvent)
      ctx.error(t.find("format", Need::kOptional)->source(), t.path("format"),
                "format applies to event hooks only");
  }
  if (const auto* md = t.typed<toml::table>("metadata", Need::kOptional)) {
    for (const auto& [key, node] : *md) {
      const std::string path = t.path("metadata." + std::string(key.str()));
      ctx.note(path, node);
      if (const auto* v = node.as_string()) {
        h.metadata.emplace_back(std::string(key.str()), v->get());
      } else if (node.is_integer() || node.is_floating_point() || node.is_boolean()) {
        std::ostringstream text;
        node.visit([&](const auto& n) {
          if constexpr (toml::is_number<decltype(n)> || toml::is_boolean<decltype(n)>)
            text << n;
        });
        h.metadata.emplace_back(std::string(key.str()), text.str());
      } else {
        ctx.error(node.source(), path,
                  std::string("metadata values are strings, numbers or booleans, got ") +
                      type_name(node.type()));
      }
    }
  }
}

void read_kpi_query(Context& ctx, TableReader& t, std::set<std::string>& names, KpiQuery& q) {
  q.loc = t.loc();
  t.string("name", q.name, Need::kRequired, unique_name(names, "query"));
  read_target(ctx, t, q.target);
  t.string("query", q.query, Need::kRequired, [](std::string& v) {
    if (v.empty()) return std::string("must not be empty; give a PromQL expression");
    for (size_t at = v.find("{{"); at != std::string::npos; at = v.find("{{", at + 2)) {
      const size_t end = v.find("}}", at);
      const std::string name = end == std::string::npos ? "" : v.substr(at + 2, end - at - 2);
      if (name != "service" && name != "version" && name != "stable" && name != "window")
        return "unknown placeholder " + quoted(v.substr(at, end == std::string::npos
                                                                ? std::string::npos
                                                                : end + 2 - at)) +
               "; use {{service}}, {{version}}, {{stable}} or {{window}}";
    }
    return std::string();
  });
  double bound = 0;
  if (t.number("max", bound, -1e300, 1e300)) q.max = bound;
  if (t.number("min", bound, -1e300, 1e300)) q.min = bound;
  if (!q.max && !q.min)
    ctx.error(q.loc, t.path("max"), "a query needs max or min (or both) to judge its value");
  t.integer("interval_ms", q.interval_ms, 100, kMaxTimeoutMs);
  std::string no_data;
  if (t.string("on_no_data", no_data, Need::kOptional, [](std::string& v) {
        return v == "hold" || v == "fail" || v == "pass"
                   ? std::string()
                   : quoted(v) + " is not a choice; use \"hold\", \"fail\" or \"pass\"";
      })) {
    q.on_no_data = no_data == "fail"   ? KpiQuery::NoData::kFail
                   : no_data == "pass" ? KpiQuery::NoData::kPass
                                       : KpiQuery::NoData::kHold;
  }
}

void read_protocol(TableReader& t, UpstreamProtocol& p) {
  std::string name;
  if (t.string("protocol", name, Need::kOptional, [](std::string& v) {
        return v == "http1" || v == "h2"
                   ? std::string()
                   : quoted(v) + " is not an upstream protocol; use \"http1\" or \"h2\"";
      })) {
    p = name == "h2" ? UpstreamProtocol::kH2 : UpstreamProtocol::kHttp1;
  }
}

void read_service(Context& ctx, TableReader& t, std::set<std::string>& names, Service& s) {
  s.loc = t.loc();
  t.string("name", s.name, Need::kRequired, unique_name(names, "service"));
  bool has_stable = t.string("stable", s.stable, Need::kRequired, check_name);
  auto not_empty_token = [](bool lower_case) {
    return [lower_case](std::string& v) {
      return v.empty() ? std::string("must not be empty; leave the key out to disable")
                       : token(lower_case)(v);
    };
  };
  t.string("override_header", s.override_header, Need::kOptional, not_empty_token(true));
  t.string("override_cookie", s.override_cookie, Need::kOptional, not_empty_token(false));
  t.boolean("override_strict", s.override_strict);
  t.string("assign_cookie", s.assign_cookie, Need::kOptional, not_empty_token(false));
  t.integer("slow_start_ms", s.slow_start_ms, 0, kMaxTimeoutMs);
  std::string balance = "round_robin";
  t.string("balance", balance, Need::kOptional, [](std::string& v) {
    return v == "round_robin" || v == "least_request"
               ? std::string()
               : quoted(v) + " is not a balance; use \"round_robin\" or \"least_request\"";
  });
  s.balance = balance == "least_request" ? Service::Balance::kLeastRequest
                                                : Service::Balance::kRoundRobin;
  sub_table(ctx, t, "sticky", [&](TableReader& st) { read_sticky(ctx, st, s.sticky); });
  sub_table(ctx, t, "health_check",
            [&](TableReader& ht) { read_health_check(ctx, ht, s.health_check); });
  sub_table(ctx, t, "tls", [&](TableReader& tt) { read_upstream_tls(ctx, tt, s.tls); });
  read_protocol(t, s.protocol);
  sub_table(ctx, t, "outlier_detection", [&](TableReader& ot) {
    OutlierDetection& o = s.outlier;
    o.enabled = true;
    ot.boolean("enabled", o.enabled);
    ot.integer("consecutive_failures", o.consecutive_failures, 1, 1000);
    ot.integer("ejection_ms", o.ejection_ms, 1, kMaxTimeoutMs);
    ot.integer("max_ejection_ms", o.max_ejection_ms, 1, kMaxTimeoutMs);
    ot.integer("max_ejection_percent", o.max_ejection_percent, 0, 100);
  });
  const toml::table* mirror_table = nullptr;
  sub_table(ctx, t, "mirror", [&](TableReader& mt) {
    mirror_table = &mt.table();
    mt.string("version", s.mirror.version, Need::kRequired, check_name);
    mt.integer("percent", s.mirror.percent, 0, 100);
    mt.integer("max_body_bytes", s.mirror.max_body_bytes, 0, kNoMax);
    mt.integer("max_in_flight", s.mirror.max_in_flight, 1, 100000);
  });

  std::set<std::string> version_names;
  bool weights_read = true;
  uint64_t weight_sum = 0;
  each_table(ctx, t, "version", "needs at least one [[service.version]] table",
             [&](TableReader& vt, size_t) {
               Version& v = s.versions.emplace_back();
               v.loc = vt.loc();
               vt.string("name", v.name, Need::kRequired, unique_name(version_names, "version"));
               weights_read &= vt.integer("weight", v.weight, 0, 10000, Need::kRequired);
               weight_sum += v.weight;
               read_endpoints(ctx, vt, v.endpoints);
               v.health_check = s.health_check;
               sub_table(ctx, vt, "health_check",
                         [&](TableReader& ht) { read_health_check(ctx, ht, v.health_check); });
               v.tls = s.tls;
               sub_table(ctx, vt, "tls", [&](TableReader& tt) { read_upstream_tls(ctx, tt, v.tls); });
               v.protocol = s.protocol;
               read_protocol(vt, v.protocol);
             });

  sub_table(ctx, t, "guard", [&](TableReader& gt) {
    read_guard(ctx, gt, s.guard);
    std::set<std::string> query_names;
    each_table(ctx, gt, "query", nullptr, [&](TableReader& qt, size_t) {
      read_kpi_query(ctx, qt, query_names, s.guard.queries.emplace_back());
    });
  });
  std::set<std::string> hook_names;
  each_table(ctx, t, "hook", nullptr, [&](TableReader& ht, size_t) {
    read_hook(ctx, ht, hook_names, s.hooks.emplace_back());
  });
  sub_table(ctx, t, "rollout", [&](TableReader& rt) {
    read_rollout(ctx, rt, version_names, s.stable, s.rollout);
    if (s.rollout.success_after &&
        (!s.guard.enabled || (s.guard.max_error_rate < 0 && s.guard.max_error_rate_increase < 0)))
      ctx.error(rt.find("success_after", Need::kOptional)->source(), rt.path("success_after"),
                "success_after finishes a step early on a significant pass of the error-rate "
                "rules; the service's [service.guard] needs max_error_rate or "
                "max_error_rate_increase");
  });

  if (has_stable && !version_names.empty() && !version_names.count(s.stable)) {
    ctx.error(t.find("stable", Need::kOptional)->source(), t.path("stable"),
              no_such("version", s.stable, version_names));
  }
  if (mirror_table && !s.mirror.version.empty() && !version_names.empty() &&
      !version_names.count(s.mirror.version)) {
    ctx.error(mirror_table->get("version")->source(), t.path("mirror.version"),
              no_such("version", s.mirror.version, version_names));
  }
  if (mirror_table && !s.mirror.version.empty()) {
    // A copy is the primary's HTTP/1.1 head and body, sent as HTTP/1.1.
    for (const auto& v : s.versions) {
      if (v.protocol != UpstreamProtocol::kH2) continue;
      ctx.error(mirror_table->get("version")->source(), t.path("mirror.version"),
                "mirroring needs HTTP/1.1 versions, and version " + quoted(v.name) +
                    " speaks h2");
      break;
    }
  }
  if (weights_read && !s.versions.empty() && weight_sum == 0) {
    ctx.error(s.loc, t.path(),
              "all versions have weight 0: give at least one version a positive weight");
  }
}

// The keys [listener.tls] and [admin.tls] share: handshake timeout and client certificates.
void read_tls_common(Context& ctx, TableReader& t, ListenerTls& tls) {
  t.integer("handshake_timeout_ms", tls.handshake_timeout_ms, 1, kMaxTimeoutMs);
  if (t.string("client_ca", tls.client_ca, Need::kOptional, file_path(ctx.file()))) {
    tls.client_ca_loc = ctx.loc(t.find("client_ca", Need::kOptional)->source());
    tls.client_verify = ListenerTls::ClientVerify::kRequire;
  }
  std::string verify;
  if (t.string("client_verify", verify, Need::kOptional, [](std::string& v) {
        return v == "require" || v == "optional" || v == "off"
                   ? std::string()
                   : quoted(v) + " is not a client_verify mode; use \"require\", \"optional\" "
                                 "or \"off\"";
      })) {
    tls.client_verify = verify == "require"    ? ListenerTls::ClientVerify::kRequire
                        : verify == "optional" ? ListenerTls::ClientVerify::kOptional
                                               : ListenerTls::ClientVerify::kOff;
    if (verify != "off" && tls.client_ca.empty()) {
      ctx.error(t.find("client_verify", Need::kOptional)->source(), t.path("client_verify"),
                "needs client_ca, the CA file client certificates are verified against");
    }
  }
}

// cert and key of one certificate, in `ct` ([[listener.tls.certificate]] or [admin.tls]).
void read_certificate(Context& ctx, TableReader& ct, TlsCertificate& c) {
  if (ct.string("cert", c.cert, Need::kRequired, file_path(ctx.file())))
    c.cert_loc = ctx.loc(ct.find("cert", Need::kOptional)->source());
  if (ct.string("key", c.key, Need::kRequired, file_path(ctx.file())))
    c.key_loc = ctx.loc(ct.find("key", Need::kOptional)->source());
}

void read_listener_tls(Context& ctx, TableReader& t, ListenerTls& tls) {
  read_tls_common(ctx, t, tls);
  t.boolean("session_tickets", tls.session_tickets);
  t.string("client_subject_header", tls.client_subject_header, Need::kOptional, token(true));
  each_table(ctx, t, "certificate",
             "needs at least one [[listener.tls.certificate]] with cert and key",
             [&](TableReader& ct, size_t) {
               read_certificate(ctx, ct, tls.certificates.emplace_back());
             });
}

// [admin.tls]: one certificate, directly in the table. Admin clients are few and short-lived,
// so there are no session tickets to configure.
void read_admin_tls(Context& ctx, TableReader& t, ListenerTls& tls) {
  tls.session_tickets = false;
  read_tls_common(ctx, t, tls);
  read_certificate(ctx, t, tls.certificates.emplace_back());
}

void read_listener(Context& ctx, TableReader& t, std::set<std::string>& names, Listener& l) {
  l.loc = t.loc();
  t.string("name", l.name, Need::kRequired, unique_name(names, "listener"));
  std::string text;  // kept only as l.address
  t.string("address", text, Need::kRequired, address(true, l.address));
  sub_table(ctx, t, "tls", [&](TableReader& tt) { read_listener_tls(ctx, tt, l.tls.emplace()); });
  l.h2 = l.tls.has_value();
  const auto* protocols = t.typed<toml::array>("protocols", Need::kOptional);
  if (!protocols) return;
  const char* h2_name = l.tls ? "h2" : "h2c";
  l.http1 = l.h2 = false;
  const size_t errors_before = ctx.error_count();
  for (size_t i = 0; i < protocols->size(); ++i) {
    const std::string path = indexed(t.path("protocols"), i);
    auto name = ctx.string(protocols->get(i), path, [&](std::string& s) {
      if (s == "http1" || s == h2_name) return std::string();
      return quoted(s) + " is not a protocol of this listener; use \"http1\" or \"" + h2_name +
             "\"" + (l.tls ? " (TLS listener)" : " (plain listener; h2 needs [listener.tls])");
    });
    if (name) (*name == "http1" ? l.http1 : l.h2) = true;
  }
  if (!l.http1 && !l.h2 && ctx.error_count() == errors_before) {
    ctx.error(protocols->source(), t.path("protocols"),
              std::string("needs at least one protocol: \"http1\" or \"") + h2_name + "\"");
  }
}

void read_fleet(Context& ctx, TableReader& t, FleetSettings& f) {
  f.enabled = true;
  f.loc = t.loc();
  t.string("store", f.store, Need::kRequired, [](std::string& s) {
    return s == "etcd" ? std::string()
                       : quoted(s) + " is not a store weir knows; use \"etcd\"";
  });
  const auto* list = t.typed<toml::array>("endpoints", Need::kRequired);
  if (list && list->empty())
    ctx.error(list->source(), t.path("endpoints"),
              "needs at least one etcd endpoint, e.g. [\"http://127.0.0.1:2379\"]");
  std::string scheme;
  for (size_t i = 0; list && i < list->size(); ++i) {
    const std::string path = indexed(t.path("endpoints"), i);
    auto url = ctx.string(list->get(i), path, [&](std::string& s) {
      const bool https = s.starts_with("https://");
      if (!https && !s.starts_with("http://"))
        return quoted(s) + " is not an etcd URL; use http://host:port or https://host:port";
      std::string_view rest = std::string_view(s).substr(https ? 8 : 7);
      if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
      if (!parse_host_port(rest, false))
        return quoted(s) + " needs host:port after the scheme (e.g. http://127.0.0.1:2379)";
      const std::string sch = https ? "https" : "http";
      if (!scheme.empty() && scheme != sch)
        return std::string("all endpoints use one scheme: this one is ")
            .append(sch)
            .append(", another ")
            .append(scheme);
      scheme = sch;
      return std::string();
    });
    if (url) f.endpoints.push_back(*url);
  }
  t.string("prefix", f.prefix, Need::kRequired, [](std::string& s) {
    if (s.size() < 2 || s.front() != '/' || s.back() != '/')
      return std::string("must start and end with '/', e.g. \"/weir/shop-prod/\"");
    return std::string();
  });
  t.string("replica", f.replica, Need::kOptional, [](std::string& s) {
    const bool ok = !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
             c == ':';
    });
    return ok ? std::string()
              : quoted(s) + " is not a replica name; use letters, digits, '-', '_', '.', ':'";
  });
  t.integer("timeout_ms", f.timeout_ms, 100, 60000);
  t.integer("lease_ttl_s", f.lease_ttl_s, 2, 300);
  t.integer("publish_ms", f.publish_ms, 200, 60000);
  for (auto [key, out] : {std::pair<const char*, std::string*>{"ca_file", &f.ca_file},
                          {"cert", &f.cert},
                          {"key", &f.key},
                          {"password_file", &f.password_file}})
    t.string(key, *out, Need::kOptional, file_path(ctx.file()));
  t.string("username", f.username, Need::kOptional);
  if (f.cert.empty() != f.key.empty())
    ctx.error(f.loc, t.path(f.cert.empty() ? "cert" : "key"),
              "a client certificate needs both cert and key; add the missing one");
  if (f.username.empty() != f.password_file.empty())
    ctx.error(f.loc, t.path(f.username.empty() ? "username" : "password_file"),
              "etcd authentication needs both username and password_file");
  if ((!f.ca_file.empty() || !f.cert.empty()) && scheme == "http")
    ctx.error(f.loc, t.path(f.ca_file.empty() ? "cert" : "ca_file"),
              "TLS settings need https:// endpoints");
}

Config read_config(Context& ctx, const toml::table& root) {
  Config c;
  TableReader top(ctx, root, "");
  c.proxy.loc.file = ctx.file();
  sub_table(ctx, top, "proxy", [&](TableReader& t) { read_proxy(t, c.proxy); });
  sub_table(ctx, top, "log", [&](TableReader& t) { read_log(ctx, t, c.log); });
  sub_table(ctx, top, "admin", [&](TableReader& t) {
    read_admin(t, c.admin);
    sub_table(ctx, t, "tls",
              [&](TableReader& tt) { read_admin_tls(ctx, tt, c.admin.tls.emplace()); });
  });

  sub_table(ctx, top, "fleet", [&](TableReader& t) { read_fleet(ctx, t, c.fleet); });
  if (c.fleet.enabled && (!c.admin.enabled || c.admin.state_dir.empty()))
    ctx.error(c.fleet.loc, "fleet",
              "fleet mode needs [admin] with state_dir (the replica's cache of the fleet state "
              "and of reverts not yet in etcd)");

  std::set<std::string> listener_names;
  each_table(ctx, top, "listener", "no [[listener]] defined; add one with a name and an address",
             [&](TableReader& t, size_t) {
               read_listener(ctx, t, listener_names, c.listeners.emplace_back());
             });

  std::set<std::string> service_names;
  each_table(ctx, top, "service", nullptr, [&](TableReader& t, size_t) {
    read_service(ctx, t, service_names, c.services.emplace_back());
  });

  // Route index by (listener, host, path_prefix), to catch routes that could never match.
  std::map<std::tuple<std::string, std::string, std::string>, size_t> route_keys;
  each_table(ctx, top, "route", nullptr, [&](TableReader& t, size_t i) {
    Route& r = c.routes.emplace_back();
    r.loc = t.loc();
    size_t errors_before = ctx.error_count();
    t.string("listener", r.listener, Need::kRequired, reference(listener_names, "listener"));
    t.string("host", r.host, Need::kOptional, check_route_host);
    t.string("path_prefix", r.path_prefix, Need::kOptional, check_path_prefix);
    t.string("service", r.service, Need::kRequired, reference(service_names, "service"));
    if (ctx.error_count() != errors_before) return;
    auto [it, added] = route_keys.emplace(std::tie(r.listener, r.host, r.path_prefix), i);
    if (!added) {
      ctx.error(r.loc, t.path(),
                "same listener, host and path_prefix as route[" + std::to_string(it->second) +
                    "]; remove one or change its host or path_prefix");
    }
  });
  top.finish();
  return c;
}

// The whole file at `path`; errno on failure (0 on success).
int read_text(const std::string& path, std::string& text) {
  int err = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    err = std::ferror(f) ? errno : 0;  // a directory opens fine and fails here with EISDIR
    std::fclose(f);
  } else {
    err = errno;
  }
  return err;
}

// Reads [admin] tokens_file (resolved against the config file's directory) into admin.tokens.
std::vector<Error> load_tokens(AdminSettings& admin, const std::string& config_path) {
  std::string& path = admin.tokens_file;
  size_t slash = config_path.rfind('/');
  if (!path.starts_with('/') && slash != std::string::npos)
    path = config_path.substr(0, slash + 1) + path;
  Context ctx(path);
  std::string text;
  if (int err = read_text(path, text); err != 0) {
    ctx.error(admin.loc, "admin.tokens_file", "cannot read " + path + ": " + std::strerror(err));
    return ctx.take_errors();
  }
  try {
    read_tokens(ctx, toml::parse(text, std::string_view(path)), admin.tokens);
  } catch (const toml::parse_error& e) {
    ctx.error(e.source(), "", std::string(e.description()) + "; fix the TOML syntax");
  }
  return ctx.take_errors();
}

LoadResult load(std::string_view text, const std::string& file, std::string config_path) {
  Context ctx(file);
  LoadResult result;
  std::vector<Error> token_errors;
  try {
    toml::table root = toml::parse(text, std::string_view(file));
    Config config = read_config(ctx, root);
    config.path = std::move(config_path);
    config.locs = std::make_shared<const std::map<std::string, SourceLoc, std::less<>>>(
        ctx.take_locs());
    if (ctx.error_count() == 0) {
      for (Error& e : listener_address_conflicts(config)) ctx.error(e.loc, e.key, e.message);
    }
    if (ctx.error_count() == 0 && config.admin.enabled)
      token_errors = load_tokens(config.admin, config.path);
    if (ctx.error_count() == 0 && !config.fleet.password_file.empty()) {
      std::string text;
      if (int err = read_text(config.fleet.password_file, text); err != 0) {
        token_errors.push_back({config.fleet.loc, "fleet.password_file",
                                "cannot read " + config.fleet.password_file + ": " +
                                    std::strerror(err)});
      } else {
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        config.fleet.password = std::move(text);
      }
    }
    if (ctx.error_count() == 0 && token_errors.empty()) result.config = std::move(config);
  } catch (const toml::parse_error& e) {
    ctx.error(e.source(), "", std::string(e.description()) + "; fix the TOML syntax");
  } catch (const std::exception& e) {
    ctx.error(SourceLoc{file, 0, 0}, "", std::string("internal error: ") + e.what());
  } catch (...) {
    ctx.error(SourceLoc{file, 0, 0}, "", "internal error while reading the configuration");
  }
  result.errors = ctx.take_errors();
  result.errors.insert(result.errors.end(), token_errors.begin(), token_errors.end());
  return result;
}

}  // namespace

const char* to_string(Hook::Type t) { return kHookTypes[static_cast<size_t>(t)]; }

std::string Error::to_string() const {
  std::string out = loc.file;
  // Line 0: the file as a whole (it cannot be read), no place in it.
  if (loc.line > 0) out += ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column);
  if (!key.empty()) out += ": " + key;
  return out + ": " + message;
}

std::string HostPort::to_string() const {
  std::string port_text = ":" + std::to_string(port);
  return host.find(':') != std::string::npos ? "[" + host + "]" + port_text : host + port_text;
}

std::optional<HostPort> parse_host_port(std::string_view s, bool allow_port_zero) {
  HostPort out;
  if (!split_host_port(s, allow_port_zero, out).empty()) return std::nullopt;
  return out;
}

LoadResult load_string(std::string_view toml_text, const std::string& source_name) {
  return load(toml_text, source_name, "");
}

LoadResult load_file(const std::string& path) {
  std::string text;
  int err = read_text(path, text);
  if (err == 0) return load(text, path, path);
  LoadResult result;
  result.errors.push_back(
      {SourceLoc{path, 0, 0}, "", std::string("cannot read the file: ") + std::strerror(err)});
  return result;
}

}  // namespace weir::config

// --- After loading: address conflicts, warnings, the summary -------------------------------

namespace weir::config {
namespace {

// An address literal in one canonical spelling ("::0" and "0::" are "::"), with its family;
// AF_UNSPEC for a name.
struct CanonicalHost {
  int family = AF_UNSPEC;
  std::string text;
};

CanonicalHost canonical(const std::string& host) {
  unsigned char raw[sizeof(in6_addr)];
  char text[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (inet_pton(family, host.c_str(), raw) == 1 &&
        inet_ntop(family, raw, text, sizeof text) != nullptr) {
      return {family, text};
    }
  }
  return {AF_UNSPEC, lower(host)};
}

std::string show_loc(const SourceLoc& l) {
  return l.file + ":" + std::to_string(l.line) + ":" + std::to_string(l.column);
}

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", fraction * 100);
  return buf;
}

}  // namespace

SourceLoc Config::where(std::string_view key, const SourceLoc& fallback) const {
  if (!locs) return fallback;
  auto it = locs->find(key);
  return it == locs->end() ? fallback : it->second;
}

bool addresses_overlap(const HostPort& a, const HostPort& b) {
  if (a.port == 0 || b.port == 0 || a.port != b.port) return false;
  const CanonicalHost x = canonical(a.host), y = canonical(b.host);
  if (x.family == y.family && x.text == y.text) return true;
  // weir's IPv6 sockets are dual-stack: "::" takes IPv4 connections too.
  auto covers = [](const CanonicalHost& wild, const CanonicalHost& other) {
    if (wild.family == AF_INET6 && wild.text == "::") return true;
    return wild.family == AF_INET && wild.text == "0.0.0.0" && other.family != AF_INET6;
  };
  return covers(x, y) || covers(y, x);
}

std::vector<Error> listener_address_conflicts(const Config& config) {
  std::vector<Error> out;
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const Listener& l = config.listeners[i];
    const std::string key = "listener[" + std::to_string(i) + "].address";
    const SourceLoc at = config.where(key, l.loc);
    const Listener* earlier = nullptr;
    size_t j = 0;
    for (; j < i && !earlier; ++j) {
      if (addresses_overlap(config.listeners[j].address, l.address)) earlier = &config.listeners[j];
    }
    if (earlier) {
      const SourceLoc there = config.where("listener[" + std::to_string(j - 1) + "].address",
                                           earlier->loc);
      out.push_back({at, key,
                     l.address.to_string() + " overlaps listener " + quoted(earlier->name) + " (" +
                         earlier->address.to_string() + " at " + show_loc(there) +
                         "); two listeners on one address would split its connections at random: "
                         "give each its own port"});
    } else if (config.admin.enabled && addresses_overlap(config.admin.address, l.address)) {
      out.push_back({at, key,
                     l.address.to_string() + " overlaps the admin listener (" +
                         config.admin.address.to_string() + " at " +
                         show_loc(config.where("admin.address", config.admin.loc)) +
                         "); give the listener or [admin] address another port"});
    }
  }
  return out;
}

std::vector<Error> warnings(const Config& config) {
  std::vector<Error> out;
  auto warn = [&](const std::string& key, const SourceLoc& fallback, std::string message) {
    out.push_back({config.where(key, fallback), key, std::move(message)});
  };
  std::set<std::string> routed_services, routed_listeners;
  for (const Route& r : config.routes) {
    routed_services.insert(r.service);
    routed_listeners.insert(r.listener);
  }
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const Listener& l = config.listeners[i];
    if (routed_listeners.count(l.name)) continue;
    warn("listener[" + std::to_string(i) + "]", l.loc,
         "no route uses listener " + quoted(l.name) +
             ", so it answers every request with 404; add a [[route]] for it or remove it");
  }
  for (size_t i = 0; i < config.services.size(); ++i) {
    const Service& s = config.services[i];
    const std::string sp = "service[" + std::to_string(i) + "]";
    if (!routed_services.count(s.name)) {
      warn(sp, s.loc,
           "no route uses service " + quoted(s.name) +
               ", so it never gets traffic; add a [[route]] with service = " + quoted(s.name));
    }
    auto check_health = [&](const std::string& table, const HealthCheck& hc) {
      if (!hc.enabled || hc.timeout_ms <= hc.interval_ms) return;
      const std::string key = config.has(table + ".timeout_ms") ? table + ".timeout_ms"
                                                                        : table + ".interval_ms";
      warn(key, config.where(table, s.loc),
           "timeout_ms (" + std::to_string(hc.timeout_ms) + ") is longer than interval_ms (" +
               std::to_string(hc.interval_ms) +
               "): a probe still waiting when the next one is due is cut short; make the "
               "timeout shorter than the interval");
    };
    check_health(sp + ".health_check", s.health_check);
    for (size_t j = 0; j < s.versions.size(); ++j) {
      const std::string vt = sp + ".version[" + std::to_string(j) + "].health_check";
      if (config.has(vt)) check_health(vt, s.versions[j].health_check);
    }
    const GuardConfig& g = s.guard;
    const std::string gp = sp + ".guard";
    if (s.rollout.approvals > 0) {
      // Two tokens at least: the starter's, and another that may approve.
      size_t approvers = 0;
      for (const AdminToken& t : config.admin.tokens) approvers += t.approve ? 1 : 0;
      if (approvers == 0) {
        warn(sp + ".rollout.approvals", s.rollout.loc,
             "approvals = " + std::to_string(s.rollout.approvals) +
                 " but no admin token has the \"approve\" scope, so the rollout's gates can "
                 "never open; give a reviewer's token scope = \"approve\" in the tokens file");
      }
    }
    if (s.rollout.present && !g.enabled) {
      warn(sp + ".rollout", s.rollout.loc,
           "rollout of " + quoted(s.rollout.version) +
               " has no guard, so it advances on time alone and nothing reverts a failing "
               "step; add [service.guard]");
    }
    if (!g.enabled) continue;
    if (s.versions.size() == 1) {
      warn(gp, g.loc,
           "service " + quoted(s.name) +
               " has a single version: the guard watches only non-stable versions, so it has "
               "nothing to watch; add the version you mean to ship or remove the guard");
    }
    if (g.max_error_rate >= 1) {
      warn(gp + ".max_error_rate", g.loc,
           "an error rate is at most 1, so max_error_rate = 1 can never be exceeded and this "
           "threshold never reverts; use a fraction such as 0.05 (5%)");
    }
    if (g.max_error_rate_increase >= 1) {
      warn(gp + ".max_error_rate_increase", g.loc,
           "an error rate rises by at most 1, so this threshold never reverts; use a fraction "
           "such as 0.02 (2 points above stable)");
    }
    // More than this many requests a second, sustained over the whole window, at a version
    // that is being tried out is beyond any plausible traffic share.
    constexpr uint64_t kPlausibleRate = 10000;
    if (g.min_requests > kPlausibleRate * g.window_s) {
      warn(gp + ".min_requests", g.loc,
           "min_requests = " + std::to_string(g.min_requests) + " within window_s = " +
               std::to_string(g.window_s) + " needs over " +
               std::to_string(g.min_requests / g.window_s) +
               " requests a second at each guarded version before the guard judges at all; "
               "lower min_requests or lengthen window_s");
    }
    if (g.max_error_rate < 0 && g.max_error_rate_increase < 0 && g.max_p99_ms == 0 &&
        g.max_p50_ms == 0 && g.max_p99_ratio == 0) {
      warn(gp, g.loc,
           "no threshold is set (max_error_rate, max_error_rate_increase, max_p99_ms, "
           "max_p50_ms, max_p99_ratio), so the guard reverts only a version with no healthy "
           "endpoint; set at least one");
    }
  }
  return out;
}

std::string summary(const Config& config) {
  std::string out;
  for (const Listener& l : config.listeners) {
    std::string protocols = l.http1 ? "http1" : "";
    if (l.h2) protocols += std::string(protocols.empty() ? "" : ", ") + (l.tls ? "h2" : "h2c");
    out += "listener " + l.name + " on " + l.address.to_string() + (l.tls ? " (TLS, " : " (") +
           protocols + ")\n";
  }
  if (config.admin.enabled) {
    out += "admin on " + config.admin.address.to_string() + (config.admin.tls ? " (TLS)" : "") +
           ", " + std::to_string(config.admin.tokens.size()) + " token" +
           (config.admin.tokens.size() == 1 ? "" : "s") +
           (config.admin.state_dir.empty() ? ", state in memory" : ", state in " + config.admin.state_dir) +
           "\n";
  }
  for (const Route& r : config.routes) {
    out += "route " + r.listener + " " + r.host + r.path_prefix + " -> " + r.service + "\n";
  }
  for (const Service& s : config.services) {
    uint64_t total = 0;
    for (const Version& v : s.versions) total += v.weight;
    out += "service " + s.name + ":";
    for (const Version& v : s.versions) {
      char share[16];
      std::snprintf(share, sizeof share, "%.3g%%",
                    total ? 100.0 * v.weight / static_cast<double>(total) : 0.0);
      out += " " + v.name + " " + std::to_string(v.weight) + " (" + share +
             (v.name == s.stable ? ", stable" : "") + ", " + std::to_string(v.endpoints.size()) +
             " endpoint" + (v.endpoints.size() == 1 ? "" : "s") + ")";
    }
    out += "\n";
    if (s.guard.enabled) {
      const GuardConfig& g = s.guard;
      std::string limits;
      auto add = [&](const std::string& part) { limits += (limits.empty() ? "" : ", ") + part; };
      if (g.max_error_rate >= 0) add("error rate > " + percent(g.max_error_rate));
      if (g.max_error_rate_increase >= 0)
        add("error rate > stable + " + percent(g.max_error_rate_increase));
      if (g.max_p99_ms) add("p99 > " + std::to_string(g.max_p99_ms) + " ms");
      if (g.max_p50_ms) add("p50 > " + std::to_string(g.max_p50_ms) + " ms");
      if (g.max_p99_ratio > 0) {
        char ratio[32];
        std::snprintf(ratio, sizeof ratio, "p99 > %g x stable", g.max_p99_ratio);
        add(ratio);
      }
      if (limits.empty()) limits = "no healthy endpoint";
      out += "  guard: reverts on " + limits + " over " + std::to_string(g.window_s) +
             " s (at least " + std::to_string(g.min_requests) + " requests, " +
             std::to_string(g.consecutive) + " in a row)\n";
    }
    if (s.rollout.present) {
      std::string steps;
      for (const RolloutStep& step : s.rollout.steps) {
        steps += steps.empty() ? "" : ", ";
        steps += step.pause ? (step.pause_s ? "pause " + std::to_string(step.pause_s) + " s"
                                            : std::string("pause"))
                            : std::to_string(step.weight);
      }
      out += "  rollout: " + s.rollout.version + " through [" + steps + "]%, " +
             std::to_string(s.rollout.step_s) + " s a step" +
             (s.rollout.auto_start ? ", starts with weir" : "") +
             (s.rollout.approvals ? ", " + std::to_string(s.rollout.approvals) + " approval(s)"
                                  : "") +
             (s.rollout.windows.empty() ? "" : ", in change windows") + "\n";
    }
  }
  return out;
}

}  // namespace weir::config
