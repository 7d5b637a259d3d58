#include "proxy/state_store.h"

#include "proxy/http_util.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

namespace weir::proxy {

namespace {

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

bool write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool make_dirs(const std::string& dir, std::string* error) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) *error = "cannot create " + dir + ": " + ec.message();
  return !ec;
}


}  // namespace

nlohmann::json AuditEvent::to_json() const {
  nlohmann::json j = {{"seq", seq},       {"time", time},     {"actor", actor},
                      {"action", action}, {"service", service}, {"before", before},
                      {"after", after},   {"reason", reason}};
  if (!detail.is_null()) j["detail"] = detail;
  return j;
}

bool write_file_atomic(const std::string& path, const std::string& data, std::string* error) {
  // Per process: during a binary upgrade two weirs may save at once; each renames its own file.
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    *error = errno_text("cannot create", tmp);
    return false;
  }
  bool ok = write_all(fd, data) && ::fsync(fd) == 0;
  if (!ok) *error = errno_text("cannot write", tmp);
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = errno_text("cannot rename to", path);
    ok = false;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return false;
  }
  // The rename itself is durable only once the directory entry is.
  std::string dir = path.substr(0, path.rfind('/') + 1);
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

StateStore::StateStore(std::string dir) : dir_(std::move(dir)) {}

StateStore::~StateStore() {
  if (audit_fd_ >= 0) ::close(audit_fd_);
}

bool StateStore::open(std::string* error) {
  if (dir_.empty()) return true;
  if (!make_dirs(dir_, error)) return false;
  std::string path = dir_ + "/audit.log";
  audit_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (audit_fd_ < 0) {
    *error = errno_text("cannot open", path);
    return false;
  }
  ::flock(audit_fd_, LOCK_EX);
  // A torn tail would glue itself to the next record: start that one on a fresh line.
  bool ok = true;
  struct stat st{};
  if (::fstat(audit_fd_, &st) == 0 && st.st_size > 0) {
    char last = '\n';
    if (::pread(audit_fd_, &last, 1, st.st_size - 1) != 1) last = '\n';
    if (last != '\n' && !write_all(audit_fd_, "\n")) {
      *error = errno_text("cannot write", path);
      ok = false;
    }
  }
  if (ok) catch_up();
  ::flock(audit_fd_, LOCK_UN);
  return ok;
}

void StateStore::catch_up() {
  struct stat st{};
  if (::fstat(audit_fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) <= audit_read_) return;
  std::ifstream in(dir_ + "/audit.log", std::ios::binary);
  in.seekg(static_cast<std::streamoff>(audit_read_));
  std::string line;
  // A line torn by a crash mid-write is skipped; every acknowledged one was fsync'd whole.
  while (std::getline(in, line) && !in.eof()) {
    audit_read_ += line.size() + 1;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned())
      continue;
    seq_ = std::max(seq_, j["seq"].get<uint64_t>());
    recent_.push_back(std::move(j));
    if (recent_.size() > kKeptEvents) recent_.pop_front();
  }
}

std::optional<nlohmann::json> StateStore::load_state(std::string* error) const {
  if (dir_.empty()) return std::nullopt;
  std::string path = dir_ + "/state.json";
  std::ifstream in(path);
  if (!in) {
    if (errno != ENOENT) *error = errno_text("cannot read", path);
    return std::nullopt;
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) {
    *error = path + " is not valid JSON";
    return std::nullopt;
  }
  return j;
}

bool StateStore::save_state(const nlohmann::json& state, std::string* error) {
  if (dir_.empty()) return true;
  return write_file_atomic(dir_ + "/state.json", state.dump(2) + "\n", error);
}

bool StateStore::append(AuditEvent& ev, std::string* error) {
  if (audit_fd_ < 0) {
    ev.seq = seq_ + 1;
    ev.time = utc_timestamp_ms();
    seq_ = ev.seq;
    recent_.push_back(ev.to_json());
    if (recent_.size() > kKeptEvents) recent_.pop_front();
    return true;
  }
  // Another weir may append to the same file (the old one during a binary upgrade): under the
  // lock, its records are read first, so sequence numbers go on after them and stay unique.
  ::flock(audit_fd_, LOCK_EX);
  catch_up();
  ev.seq = seq_ + 1;
  ev.time = utc_timestamp_ms();
  nlohmann::json j = ev.to_json();
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  bool ok = write_all(audit_fd_, line) && ::fdatasync(audit_fd_) == 0;
  if (ok) {
    audit_read_ += line.size();
  } else {
    *error = errno_text("cannot write", dir_ + "/audit.log");
  }
  ::flock(audit_fd_, LOCK_UN);
  if (!ok) return false;
  seq_ = ev.seq;
  recent_.push_back(std::move(j));
  if (recent_.size() > kKeptEvents) recent_.pop_front();
  return true;
}

std::vector<nlohmann::json> StateStore::events_since(uint64_t since, size_t limit) const {
  std::vector<nlohmann::json> out;
  for (auto it = recent_.rbegin(); it != recent_.rend() && out.size() < limit; ++it) {
    if ((*it)["seq"].get<uint64_t>() <= since) break;
    out.push_back(*it);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace weir::proxy
