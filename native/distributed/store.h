// Key-value stores for the rendezvous of a process group, with the contract of
// Gloo's rendezvous::Store: set, get (waits for the key) and wait with a
// timeout whose error names the keys, so the ranks, that never came. The TCP store is served by rank 0, as
// torchrun's TCPStore is; plain POSIX sockets, no Node and no Gloo here.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../core/error.h"

namespace rlfarm::distributed {

using Milliseconds = std::chrono::milliseconds;

// "2.5": seconds as messages show them.
inline std::string seconds_text(Milliseconds ms) {
  std::ostringstream out;
  out << ms.count() / 1000.0;
  return out.str();
}

// A wait that ran out of time, with the keys still missing then.
class StoreTimeout : public Error {
 public:
  StoreTimeout(const std::string& message, std::vector<std::string> missing)
      : Error(message), missing(std::move(missing)) {}
  std::vector<std::string> missing;
};

// The wait ended because rank 0 stopped serving the store (it exited, or gave
// up its own wait) before the keys came: the same missing keys, said as such.
class StoreClosed : public StoreTimeout {
 public:
  using StoreTimeout::StoreTimeout;
};

class KeyValueStore {
 public:
  virtual ~KeyValueStore() = default;
  virtual void set(const std::string& key, const std::vector<char>& value) = 0;
  // Waits up to `timeout` for the key; throws naming the key otherwise.
  virtual std::vector<char> get(const std::string& key, Milliseconds timeout) = 0;
  // Waits up to `timeout` for every key; throws StoreTimeout naming the missing keys otherwise.
  virtual void wait(const std::vector<std::string>& keys, Milliseconds timeout) = 0;
  // Forgets a key (absent: nothing happens), so a long run's messages do not pile up.
  virtual void erase(const std::string& key) = 0;
  // Where the store lives, for error messages ("tcp://host:port", "file://dir").
  virtual std::string where() const = 0;
};

// Served by rank 0 on a thread of its own until the object is destroyed.
// Throws when the port cannot be bound (naming the port and why).
class TcpStoreServer {
 public:
  TcpStoreServer(const std::string& host, int port, int world_size);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;
  int port() const;  // the bound port (useful when 0 was asked for)

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A client of a TcpStoreServer. Connecting retries until `connect_timeout`
// (rank 0 may start later than the others); the first message says who we are,
// and the server refuses a rank whose world size differs from its own.
class TcpStoreClient : public KeyValueStore {
 public:
  TcpStoreClient(const std::string& host, int port, int rank, int world_size, Milliseconds connect_timeout);
  ~TcpStoreClient() override;
  void set(const std::string& key, const std::vector<char>& value) override;
  std::vector<char> get(const std::string& key, Milliseconds timeout) override;
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override;
  void erase(const std::string& key) override;
  std::string where() const override;

 private:
  std::vector<std::string> request(const std::vector<std::string>& fields, Milliseconds reply_within);
  std::string host_;
  int port_;
  int fd_ = -1;
};

}  // namespace rlfarm::distributed
