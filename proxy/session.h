// The seams between a client connection's layers, so HTTP/2 and TLS slot in beside HTTP/1.1:
//   ClientConn (socket) --Transport--> [TLS transport later] --> Session (HTTP/1.1 or HTTP/2)
// A Session turns bytes into Exchanges and Exchange events back into bytes; a Transport moves
// bytes and owns the connection's deadline timer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace weir::proxy {

class Worker;

struct ConnInfo {
  std::string peer_ip;  // textual client address, for X-Forwarded-For
  uint32_t listener = 0;  // index into the snapshot's listeners
  bool tls = false;
  std::string client_subject;  // the verified client certificate's subject (mTLS), or ""
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Queues bytes; they leave at the end of this loop turn.
  virtual void write(std::string_view data) = 0;
  // Direct access to the send buffer for formatting in place; call commit() after.
  virtual std::string& write_buffer() = 0;
  virtual void commit() = 0;
  // true when the peer is slow and the session should stop producing until on_drain().
  virtual bool congested() = 0;
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  // Arms the single connection deadline (replacing any); Session::on_timeout() when it passes.
  virtual void set_deadline(uint64_t ms_from_now) = 0;
  virtual void clear_deadline() = 0;
  // Sends what is queued, then closes. With `linger`, the read side stays open (discarding) for
  // a moment first, so a client still sending does not get a reset that destroys the response
  // before it is read; use it whenever unread input may still be on its way.
  virtual void close_after_flush(bool linger) = 0;
  // Closes now (resets the stream).
  virtual void abort() = 0;
  virtual const ConnInfo& info() const = 0;
  // TLS: the client certificate verified in the handshake (mTLS), for requests to carry.
  virtual void set_client_subject(std::string subject) = 0;
  virtual Worker& worker() = 0;
};

inline constexpr uint64_t kDrainIdleGraceMs = 1000;

class Session {
 public:
  virtual ~Session() = default;
  virtual void on_read(const char* data, size_t len) = 0;
  virtual void on_eof() = 0;
  // The transport's send queue fell to its low-water mark after congested() said true.
  virtual void on_drain() = 0;
  virtual void on_timeout() = 0;
  // Graceful shutdown: finish in-flight work, accept no more, then close. A connection with
  // nothing in flight gets kDrainIdleGraceMs for a request that may already be on its way
  // (answered, then closed), so a client does not see its connection close under it.
  virtual void start_drain() = 0;
  // The transport is going away (peer reset, forced shutdown): release everything now.
  virtual void on_close() = 0;
};

}  // namespace weir::proxy
