// Durable control-plane state in [admin] state_dir: state.json (the RuntimeState, replaced
// atomically: temp file, fsync, rename, fsync of the directory) and audit.log (one JSON line
// per change, fsync'd before the change is acknowledged). With no state_dir both live in memory
// only. Owned by Server; control thread only.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace weir::proxy {

// One audit record. seq and time are assigned by StateStore::append.
// A false positive of clang-tidy 14 on the implicit move of nlohmann::json members (json's
// by-value operator= is noexcept for a moved-from json).
// NOLINTNEXTLINE(bugprone-exception-escape)
struct AuditEvent {
  uint64_t seq = 0;
  std::string time;    // RFC 3339 UTC with milliseconds
  std::string actor;   // token name, "signal" (SIGHUP), "startup" or "guard"
  std::string action;  // set_weights, promote, rollback, reload, reset_overrides, ...
  std::string service;  // "" for process-wide actions
  nlohmann::json before;
  nlohmann::json after;
  std::string reason;
  nlohmann::json detail;  // evidence, errors

  nlohmann::json to_json() const;
};

class StateStore {
 public:
  explicit StateStore(std::string dir);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Creates the directory and reads audit.log's tail so sequence numbers continue.
  bool open(std::string* error);

  // The saved state; nullopt without error when there is none yet.
  std::optional<nlohmann::json> load_state(std::string* error) const;
  bool save_state(const nlohmann::json& state, std::string* error);

  // Assigns ev.seq and ev.time, writes and fsyncs the line; false + *error leaves no record.
  bool append(AuditEvent& ev, std::string* error);

  // Events with seq > since, oldest first, at most `limit` of them (the newest ones).
  std::vector<nlohmann::json> events_since(uint64_t since, size_t limit) const;
  uint64_t last_seq() const { return seq_; }
  const std::string& dir() const { return dir_; }

  static constexpr size_t kKeptEvents = 10000;

 private:
  // Reads records appended to audit.log past audit_read_ (by this or another process).
  void catch_up();

  std::string dir_;
  int audit_fd_ = -1;
  uint64_t audit_read_ = 0;  // bytes of audit.log read or written by this store
  uint64_t seq_ = 0;
  std::deque<nlohmann::json> recent_;
};

// Writes `data` to `path` atomically (temp file in the same directory, fsync, rename, fsync of
// the directory): a crash leaves either the old or the new file, never a torn one.
bool write_file_atomic(const std::string& path, const std::string& data, std::string* error);

}  // namespace weir::proxy
