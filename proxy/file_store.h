// The single-replica ControlStore: the runtime state in memory, persisted to [admin] state_dir
// through StateStore (state.json replaced atomically, audit.log fsync'd) before a change is
// acknowledged. Owned by Server; control thread only.
#pragma once

#include <memory>

#include "proxy/control_store.h"

namespace weir::proxy {

class FileStore final : public ControlStore {
 public:
  explicit FileStore(std::string state_dir) : files_(std::move(state_dir)) {}

  bool open(const config::Config& config, std::string* error) override;
  void set_listener(Listener l) override { listener_ = std::move(l); }
  void set_admin_address(const std::string&) override {}
  const RuntimeState& state() const override { return state_; }
  void commit(ServiceChange change, CommitDone done) override;
  bool reconfigure(const config::Config& next, AuditEvent ev, std::vector<std::string>* reset,
                   std::string* error) override;
  void append(AuditEvent ev) override;
  std::vector<nlohmann::json> events_since(uint64_t since, size_t limit) const override {
    return files_.events_since(since, limit);
  }
  bool leads() const override { return true; }
  bool stale() const override { return false; }
  nlohmann::json fleet_json() const override { return nullptr; }
  std::string health() const override { return ""; }
  FleetFigures figures() const override { return {}; }
  void share_window(const std::string&, uint64_t, const health::Sample&) override {}
  std::vector<const health::StatsWindow*> remote_windows(const std::string&) const override {
    return {};
  }
  void stop() override {}

 private:
  StateStore files_;
  RuntimeState state_;
  Listener listener_;
};

// Applies `change` to `state` as a store does before writing: the If-Match check, then the
// change itself. nullopt + the refusal in *refused, or the service's new runtime (state_version
// not yet assigned); *unchanged when there is nothing to write.
std::optional<ServiceRuntime> apply_change(const RuntimeState& state, ServiceChange& change,
                                           bool* unchanged, CommitResult* refused);

}  // namespace weir::proxy
