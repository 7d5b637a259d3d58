// The admin API's request handling (proxy/admin_api.cc) over a fake AdminHost, as in
// tests/proxy/admin_api_test.cc. Input: up to 16 requests, each
//   [token byte][fail-commit byte] "METHOD PATH[?QUERY]\n" "IF-MATCH\n" "BODY\n"
// - Every answer has a status in 100..599; a JSON answer parses as JSON.
// - Without a valid token only the open paths answer anything but 401; a read token never
//   gets a write through (403 before anything else).
// - A change goes through commit or not at all: the runtime state changes only with a
//   committed audit event, never when commit fails, and stays valid (each service's stable is
//   one of its versions, weights never all zero).
#include <openssl/evp.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "proxy/admin_api.h"
#include "proxy/file_store.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using weir::proxy::AdminRequest;
using weir::proxy::RuntimeState;
namespace config = weir::config;

// A token whose digest is that of `raw`, as config/load.cc reads them from a tokens file.
config::AdminToken token(std::string name, config::AdminToken::Scope scope, std::string_view raw) {
  config::AdminToken t;
  t.name = std::move(name);
  t.scope = scope;
  unsigned len = 0;
  EVP_Digest(raw.data(), raw.size(), t.sha256.data(), &len, EVP_sha256(), nullptr);
  return t;
}

config::Service service(std::string name, std::vector<std::pair<std::string, uint32_t>> weights) {
  config::Service s;
  s.name = std::move(name);
  s.stable = weights.front().first;
  uint16_t port = 1;
  for (auto& [v, w] : weights) {
    config::Version version;
    version.name = v;
    version.weight = w;
    version.endpoints = {{"127.0.0.1", port++}};
    s.versions.push_back(std::move(version));
  }
  return s;
}

// Plain members; commit fails when the input says so, like a full disk.
class Host : public weir::proxy::AdminHost {
 public:
  Host() {
    config_.admin.enabled = true;
    config_.admin.tokens = {token("ci", config::AdminToken::Scope::kWrite, "w"),
                            token("viewer", config::AdminToken::Scope::kRead, "r")};
    config_.services = {service("shop", {{"blue", 90}, {"green", 10}, {"canary", 0}}),
                        service("api", {{"stable", 100}})};
    config_.services[0].guard.enabled = true;
    runtime_.reconcile(config_);
  }
  const config::Config& configured() const override { return config_; }
  const RuntimeState& runtime() const override { return runtime_; }
  // As a store does (tests/proxy/admin_api_test.cc): the If-Match check and the change through
  // apply_change, then "persisted"; a failing commit changes nothing.
  void commit(weir::proxy::ServiceChange change, weir::proxy::CommitDone done) override {
    ++commit_calls;
    if (fail_commit) {
      done({500, "persist_failed", "disk full"});
      return;
    }
    weir::proxy::CommitResult r;
    bool unchanged = false;
    std::optional<weir::proxy::ServiceRuntime> next =
        weir::proxy::apply_change(runtime_, change, &unchanged, &r);
    if (next && !unchanged) {
      ++next->state_version;
      runtime_.set(change.service, std::move(*next));
      events_.push_back(change.event.to_json());
    }
    done(r);
  }
  weir::proxy::ReloadOutcome reload(const std::string&) override {
    weir::proxy::ReloadOutcome r;
    r.ok = !fail_commit;
    if (!r.ok) r.errors = {"weir.toml:1:1: proxy: fuzz"};
    return r;
  }
  std::vector<nlohmann::json> events_since(uint64_t since, size_t limit) const override {
    std::vector<nlohmann::json> out;
    for (size_t i = static_cast<size_t>(std::min<uint64_t>(since, events_.size()));
         i < events_.size() && out.size() < limit; ++i) {
      out.push_back(events_[i]);
    }
    return out;
  }
  std::string metrics_text() override { return "weir_up 1\n"; }
  void annotate(weir::proxy::ServiceStateView& v) const override { v.guard = "pass"; }
  void rollout_command(const std::string&, const std::string& op, const std::string&,
                       const std::string&, weir::proxy::CommitDone done) override {
    if (op == "start") {
      done({});
      return;
    }
    done({409, "rollout_refused", "no rollout is running"});
  }
  std::string explain_json(const std::string& service) const override {
    return nlohmann::json{{"service", service}, {"decisions", nlohmann::json::array()}}.dump();
  }

  config::Config config_;
  RuntimeState runtime_;
  std::vector<nlohmann::json> events_;
  bool fail_commit = false;
  size_t commit_calls = 0;
};

void check_state(const Host& host) {
  for (const auto& svc : host.config_.services) {
    const std::string& stable = host.runtime_.stable(svc);
    WEIR_FUZZ_CHECK(std::any_of(svc.versions.begin(), svc.versions.end(),
                                [&](const config::Version& v) { return v.name == stable; }),
                    "runtime stable is not a version of the service");
    uint64_t total = 0;
    for (const auto& v : svc.versions) total += host.runtime_.weight(svc, v);
    WEIR_FUZZ_CHECK(total > 0, "every weight of a service is zero");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  weir::fuzz::FuzzInput in(data, size);
  Host host;
  weir::proxy::AdminApi api(host);
  for (int n = 0; n < 16 && !in.rest().empty(); ++n) {
    const uint8_t token_choice = in.byte();
    host.fail_commit = in.flag();
    std::string_view line = in.line(1024);
    AdminRequest req;
    size_t sp = line.find(' ');
    req.method = std::string(line.substr(0, sp));
    std::string_view target = sp == std::string_view::npos ? "" : line.substr(sp + 1);
    size_t q = target.find('?');
    req.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
    bool valid_token = false, write_token = false;
    switch (token_choice % 4) {
      case 1:
        req.headers.emplace_back("authorization", "Bearer w");
        valid_token = write_token = true;
        break;
      case 2:
        req.headers.emplace_back("authorization", "bearer  r ");
        valid_token = true;
        break;
      case 3: req.headers.emplace_back("authorization", "Bearer x"); break;
      default: break;
    }
    std::string_view if_match = in.line(256);
    if (!if_match.empty()) req.headers.emplace_back("if-match", std::string(if_match));
    req.body = std::string(in.line());

    const nlohmann::json before = host.runtime_.to_json();
    const size_t events_before = host.events_.size();
    std::optional<weir::proxy::AdminResponse> answer;
    api.handle(req, [&](weir::proxy::AdminResponse a) { answer = std::move(a); });
    // The fake host commits at once, so every answer is there when handle returns.
    WEIR_FUZZ_CHECK(answer.has_value(), "no answer");
    const weir::proxy::AdminResponse& r = *answer;

    WEIR_FUZZ_CHECK(r.status >= 100 && r.status <= 599, "status out of range");
    if (r.content_type.rfind("application/json", 0) == 0) {
      WEIR_FUZZ_CHECK(nlohmann::json::accept(r.body), "a JSON answer that is not JSON");
    }
    const bool open = req.path == "/healthz";  // open_healthz by default; /metrics is not open
    const bool read_only = req.method == "GET" || req.method == "HEAD";
    if (!open && !valid_token) WEIR_FUZZ_CHECK(r.status == 401, "answered without a valid token");
    if (!open && valid_token && !write_token && !read_only) {
      WEIR_FUZZ_CHECK(r.status == 403, "a read token got past the write check");
    }
    const bool changed = host.runtime_.to_json() != before;
    if (changed) {
      WEIR_FUZZ_CHECK(write_token && !host.fail_commit, "state changed without a commit");
      WEIR_FUZZ_CHECK(host.events_.size() == events_before + 1, "a change without one audit event");
      WEIR_FUZZ_CHECK(r.status >= 200 && r.status < 300, "a change answered as a failure");
    }
    check_state(host);
  }
  return 0;
}
