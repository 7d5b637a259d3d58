// The fleet's ControlStore: replicas with the same [fleet] prefix share one truth in etcd.
// Keys under the prefix P (values are JSON):
//   P services/NAME   one service's shared runtime state; its mod_revision is the ETag, and every
//                     change is a compare-and-swap on it, written with its audit event in one txn
//   P events/...      one audit event each (time-ordered names; seq = the key's mod_revision)
//   P leader          the replica that drives timed work, bound to its lease
//   P replicas/NAME   membership and the replica's guard windows of the last publish period,
//                     bound to its lease: one write per replica per publish_ms
// One watch on the whole prefix keeps every replica's view current; a change made anywhere is
// published to the workers when the watch delivers it. The last state applied is cached in
// state_dir, so a replica started while etcd is away serves it (and says so). Guard reverts that
// etcd cannot take are applied locally at once, kept in state_dir and written when it is back.
// Owned by Server; control thread only.
#pragma once

#include <uv.h>

#include <deque>
#include <map>
#include <memory>
#include <set>

#include "proxy/control_store.h"
#include "proxy/etcd_client.h"

namespace weir::proxy {

class FleetStore final : public ControlStore {
 public:
  // `admin_address` is what other replicas and operators reach this one's admin API on.
  FleetStore(uv_loop_t* loop, const config::Config& config, std::string admin_address);
  ~FleetStore() override;

  // Reads the fleet's state from etcd (running the loop until it answers or every endpoint
  // timed out), else from the cache in state_dir; then watches, joins and campaigns.
  bool open(const config::Config& config, std::string* error) override;
  void set_listener(Listener l) override { listener_ = std::move(l); }
  const RuntimeState& state() const override { return state_; }
  void commit(ServiceChange change, CommitDone done) override;
  bool reconfigure(const config::Config& next, AuditEvent ev, std::vector<std::string>* reset,
                   std::string* error) override;
  void append(AuditEvent ev) override;
  std::vector<nlohmann::json> events_since(uint64_t since, size_t limit) const override;
  bool leads() const override;
  bool stale() const override { return !up(); }
  nlohmann::json fleet_json() const override;
  std::string health() const override { return up() ? "ok" : "unreachable"; }
  FleetFigures figures() const override;
  void share_window(const std::string& key, uint64_t unix_second,
                    const health::Sample& delta) override;
  std::vector<const health::StatsWindow*> remote_windows(const std::string& key) const override;
  void stop() override;

  void set_admin_address(const std::string& address) override { admin_address_ = address; }

  const std::string& replica() const { return replica_; }

 private:
  struct Shared {
    ServiceRuntime rt;  // as written by the last replica (its version_set included)
    int64_t mod_revision = 0;
    std::string writer;
  };
  // A false positive of clang-tidy 14 on the implicit move of nlohmann::json members (json's
  // by-value operator= is noexcept for a moved-from json).
  // NOLINTNEXTLINE(bugprone-exception-escape)
  struct Member {
    nlohmann::json info;
    int64_t mod_revision = 0;
    uint64_t seen_ms = 0;  // monotonic, when its key was last written
  };
  // A false positive of clang-tidy 14 on the implicit move of nlohmann::json members (json's
  // by-value operator= is noexcept for a moved-from json).
  // NOLINTNEXTLINE(bugprone-exception-escape)
  struct Pending {  // a guard revert etcd has not taken yet
    std::string service, version;
    AuditEvent event;
  };
  struct Attempt;

  bool up() const;
  std::string key(std::string_view rest) const { return prefix_ + std::string(rest); }
  // Recomputes the state the data path sees for `service` from the shared state, the local
  // configuration and pending reverts; on_state when it changed (and `notify`).
  void derive(const std::string& service, bool notify);
  void derive_all(bool notify);
  void apply_kv(const EtcdKv& kv, bool deleted, bool notify);
  void load_all(const std::vector<EtcdKv>& kvs, int64_t revision, bool notify);
  void start_watch(int64_t from_revision);
  void try_commit(const std::shared_ptr<Attempt>& a);
  void finish(const std::shared_ptr<Attempt>& a, const CommitResult& r);
  void keep_locally(const ServiceChange& change);
  void save_cache();
  void save_pending();
  void retry_pending();
  void grant_lease();
  void keepalive();
  void campaign();
  void publish_member();
  nlohmann::json member_info() const;
  static void on_timer(uv_timer_t* t);

  uv_loop_t* loop_;
  std::shared_ptr<const config::Config> config_;
  std::string prefix_, replica_, admin_address_;
  uint32_t lease_ttl_s_, publish_ms_;
  StateStore files_;  // the cache (state.json), pending reverts and this replica's audit.log
  std::unique_ptr<EtcdClient> etcd_;
  std::unique_ptr<EtcdWatch> watch_;
  Listener listener_;

  RuntimeState state_;
  std::map<std::string, Shared> shared_;
  std::set<std::string> mismatched_;  // services whose shared version set differs from ours
  std::vector<Pending> pending_;
  std::deque<nlohmann::json> events_;  // the fleet's newest events, oldest first
  std::map<std::string, Member> members_;
  std::string leader_;
  int64_t leader_lease_ = 0;
  int64_t lease_id_ = 0;
  uint64_t lease_ok_ms_ = 0;  // monotonic, last time etcd confirmed the lease
  int64_t applied_revision_ = 0;
  bool watch_up_ = false;
  bool calls_up_ = true;
  std::string last_error_;
  bool stopping_ = false;
  bool campaigning_ = false, publishing_ = false, retrying_ = false;
  uint64_t event_counter_ = 0;
  uint64_t ticks_ = 0;
  uv_timer_t timer_{};
  bool timer_started_ = false;

  // This replica's guard windows since the last publish: key → unix second → counts.
  std::map<std::string, std::map<uint64_t, health::Sample>> outgoing_;
  // Other replicas' windows: replica → key → window.
  std::map<std::string, std::map<std::string, health::StatsWindow>> remote_;

  static constexpr size_t kKeptEvents = 10000;
};

}  // namespace weir::proxy
