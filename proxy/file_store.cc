#include "proxy/file_store.h"

#include "proxy/log.h"

namespace weir::proxy {

std::optional<ServiceRuntime> apply_change(const RuntimeState& state, ServiceChange& change,
                                           bool* unchanged, CommitResult* refused) {
  *unchanged = false;
  const ServiceRuntime* current = state.find(change.service);
  if (!current) {
    *refused = {404, "not_found", "no service named " + change.service};
    return std::nullopt;
  }
  if (change.expected && *change.expected != current->state_version) {
    *refused = {412, "precondition_failed",
                "the service's state version is \"" + std::to_string(current->state_version) +
                    "\", not \"" + std::to_string(*change.expected) +
                    "\"; GET it again and retry"};
    return std::nullopt;
  }
  ServiceRuntime next = *current;
  change.event.service = change.service;
  std::string why = change.apply(next, change.event);
  if (why == "=") {
    *unchanged = true;
    return next;
  }
  if (!why.empty()) {
    *refused = {409, "conflict", why};
    return std::nullopt;
  }
  return next;
}

bool FileStore::open(const config::Config& config, std::string* error) {
  if (!files_.open(error)) return false;
  std::string why;
  if (auto saved = files_.load_state(&why)) {
    auto loaded = RuntimeState::from_json(*saved, &why);
    if (!loaded) {
      *error = files_.dir() + "/state.json: " + why;
      return false;
    }
    state_ = std::move(*loaded);
  } else if (!why.empty()) {
    *error = why;
    return false;
  }
  // The config may have changed while weir was down: overrides for a changed version set go.
  for (const auto& name : state_.reconcile(config)) {
    AuditEvent ev;
    ev.actor = "startup";
    ev.action = "reset_overrides";
    ev.service = name;
    ev.reason = "the service's set of versions changed in the configuration";
    if (!files_.append(ev, error)) return false;
    log(LogLevel::kWarn, "%s: runtime weights reset: its versions changed", name.c_str());
  }
  return files_.save_state(state_.to_json(), error);
}

void FileStore::commit(ServiceChange change, CommitDone done) {
  CommitResult result;
  bool unchanged = false;
  std::optional<ServiceRuntime> next = apply_change(state_, change, &unchanged, &result);
  if (!next || unchanged) {
    done(result);
    return;
  }
  ++next->state_version;
  RuntimeState after = state_;
  after.set(change.service, std::move(*next));
  std::string error;
  // Durable first: the state file, then the audit record; only then does traffic move.
  if (!files_.save_state(after.to_json(), &error)) {
    done({500, "persist_failed", error});
    return;
  }
  if (!files_.append(change.event, &error)) {
    std::string ignored;
    files_.save_state(state_.to_json(), &ignored);
    done({500, "persist_failed", error});
    return;
  }
  state_ = std::move(after);
  if (listener_.on_state) listener_.on_state(change.service);
  done(result);
}

bool FileStore::reconfigure(const config::Config& next, AuditEvent ev,
                            std::vector<std::string>* reset, std::string* error) {
  RuntimeState after = state_;
  *reset = after.reconcile(next);
  if (!files_.save_state(after.to_json(), error)) return false;
  ev.detail["reset_services"] = *reset;
  if (!reset->empty()) ev.reason = "runtime weights reset where a service's set of versions changed";
  if (!files_.append(ev, error)) {
    std::string ignored;
    files_.save_state(state_.to_json(), &ignored);
    return false;
  }
  state_ = std::move(after);
  return true;
}

void FileStore::append(AuditEvent ev) {
  std::string ignored;
  files_.append(ev, &ignored);
}

}  // namespace weir::proxy
