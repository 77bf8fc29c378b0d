// The TCP rendezvous store. Wire format: a message is a u32 field count, then
// each field as a u32 length and its bytes (little-endian, as every host we
// build for). Requests: hello rank world | set key value | get key ms |
// wait ms key... | erase key; replies: ok ... | error why |
// timeout missing-key... | closed missing-key... (rank 0 stops serving)
#include "store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "../core/error.h"

namespace rlfarm::distributed {
namespace {

using Clock = std::chrono::steady_clock;
using Fields = std::vector<std::string>;

// Requests larger than this are refused: addresses and configs are kilobytes.
constexpr uint32_t kMaxMessageBytes = 64u << 20;

void append_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

std::string encode(const Fields& fields) {
  std::string out;
  append_u32(out, static_cast<uint32_t>(fields.size()));
  for (const auto& f : fields) {
    append_u32(out, static_cast<uint32_t>(f.size()));
    out += f;
  }
  return out;
}

uint32_t read_u32(const std::string& in, size_t at) {
  uint32_t v;
  std::memcpy(&v, in.data() + at, 4);
  return v;
}

// Parses one message from the front of `in`; false when it is not complete yet.
bool decode(const std::string& in, Fields& fields, size_t& used) {
  if (in.size() < 4) return false;
  const uint32_t count = read_u32(in, 0);
  RLF_CHECK(count <= 1u << 20, "rendezvous store: a message with ", count, " fields is not from rlfarm");
  size_t at = 4;
  Fields out;
  for (uint32_t i = 0; i < count; ++i) {
    if (in.size() < at + 4) return false;
    const uint32_t len = read_u32(in, at);
    RLF_CHECK(len <= kMaxMessageBytes, "rendezvous store: a field of ", len, " bytes is over the limit of ",
              kMaxMessageBytes);
    at += 4;
    if (in.size() < at + len) return false;
    out.emplace_back(in.substr(at, len));
    at += len;
  }
  fields = std::move(out);
  used = at;
  return true;
}

bool send_all(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string errno_text() { return std::strerror(errno); }

int64_t parse_int(const std::string& s, const char* what) {
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  fail("rendezvous store: ", what, " must be an integer; got '", s, "'");
}

std::string join_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? ", " : "") + keys[i];
  return out;
}

}  // namespace

// ---------------------------------------------------------------- server

struct TcpStoreServer::State {
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  int port = 0;
  int world_size = 0;
  std::thread thread;

  struct Client {
    int fd;
    std::string in;
    int rank = -1;
  };
  struct Waiter {
    int fd;
    bool is_get;  // get replies with the value; wait with ok
    Fields keys;
    Clock::time_point deadline;
  };
  std::map<int, Client> clients;
  std::vector<Waiter> waiters;
  std::map<std::string, std::string> data;

  void reply(int fd, const Fields& fields) {
    if (!send_all(fd, encode(fields))) close_client(fd);
  }

  void close_client(int fd) {
    if (clients.erase(fd) == 0) return;
    ::close(fd);
    waiters.erase(std::remove_if(waiters.begin(), waiters.end(), [fd](const Waiter& w) { return w.fd == fd; }),
                  waiters.end());
  }

  Fields missing(const Fields& keys) const {
    Fields out;
    for (const auto& k : keys)
      if (!data.count(k)) out.push_back(k);
    return out;
  }

  // Answers every waiter whose keys are all set, or whose time is up, and
  // all of them when `closing`: rank 0 stops serving, so their keys never come
  // (said as such, not as a timeout that did not run its course).
  void settle_waiters(bool closing = false) {
    const auto now = Clock::now();
    std::vector<Waiter> still;
    std::vector<std::pair<int, Fields>> replies;
    for (auto& w : waiters) {
      const Fields absent = missing(w.keys);
      if (absent.empty()) {
        replies.emplace_back(w.fd, w.is_get ? Fields{"ok", data.at(w.keys[0])} : Fields{"ok"});
      } else if (closing) {
        Fields r{"closed"};
        r.insert(r.end(), absent.begin(), absent.end());
        replies.emplace_back(w.fd, r);
      } else if (now >= w.deadline) {
        Fields r{"timeout"};
        r.insert(r.end(), absent.begin(), absent.end());
        replies.emplace_back(w.fd, r);
      } else {
        still.push_back(std::move(w));
      }
    }
    waiters = std::move(still);
    for (auto& [fd, fields] : replies) reply(fd, fields);
  }

  void handle(Client& c, const Fields& m) {
    const int fd = c.fd;
    if (m.empty()) return reply(fd, {"error", "empty request"});
    const std::string& op = m[0];
    if (op == "hello" && m.size() == 3) {
      const int64_t rank = parse_int(m[1], "rank"), world = parse_int(m[2], "world size");
      if (world != world_size)
        return reply(fd, {"error", "rank " + m[1] + " has WORLD_SIZE=" + m[2] + " but rank 0, which serves the store, has WORLD_SIZE=" +
                                       std::to_string(world_size)});
      if (rank < 0 || rank >= world_size)
        return reply(fd, {"error", "RANK=" + m[1] + " is outside 0.." + std::to_string(world_size - 1) +
                                       " for WORLD_SIZE=" + std::to_string(world_size)});
      for (const auto& [other_fd, other] : clients)
        if (other_fd != fd && other.rank == rank)
          return reply(fd, {"error", "two processes joined as RANK=" + m[1] + "; every rank must be unique"});
      c.rank = static_cast<int>(rank);
      return reply(fd, {"ok"});
    }
    if (c.rank < 0) return reply(fd, {"error", "the first request must be hello"});
    if (op == "set" && m.size() == 3) {
      data[m[1]] = m[2];
      reply(fd, {"ok"});
      return settle_waiters();
    }
    if (op == "erase" && m.size() == 2) {
      data.erase(m[1]);
      return reply(fd, {"ok"});
    }
    if ((op == "get" && m.size() == 3) || (op == "wait" && m.size() >= 2)) {
      const bool is_get = op == "get";
      const int64_t ms = parse_int(is_get ? m[2] : m[1], "timeout");
      Fields keys = is_get ? Fields{m[1]} : Fields(m.begin() + 2, m.end());
      waiters.push_back({fd, is_get, std::move(keys), Clock::now() + Milliseconds(std::max<int64_t>(ms, 0))});
      return settle_waiters();
    }
    reply(fd, {"error", "unknown request '" + op + "' with " + std::to_string(m.size() - 1) + " arguments"});
  }

  void read_from(int fd) {
    auto it = clients.find(fd);
    if (it == clients.end()) return;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
      return close_client(fd);
    }
    it->second.in.append(buf, static_cast<size_t>(n));
    for (;;) {
      auto cit = clients.find(fd);
      if (cit == clients.end()) return;
      Fields m;
      size_t used = 0;
      try {
        if (!decode(cit->second.in, m, used)) return;
        cit->second.in.erase(0, used);
        handle(cit->second, m);
      } catch (const std::exception& e) {
        reply(fd, {"error", e.what()});
        return close_client(fd);
      }
    }
  }

  void run() {
    for (;;) {
      std::vector<pollfd> fds{{wake[0], POLLIN, 0}, {listen_fd, POLLIN, 0}};
      for (const auto& [fd, c] : clients) fds.push_back({fd, POLLIN, 0});
      int timeout_ms = -1;
      if (!waiters.empty()) {
        auto next = waiters[0].deadline;
        for (const auto& w : waiters) next = std::min(next, w.deadline);
        const auto left = std::chrono::duration_cast<Milliseconds>(next - Clock::now()).count();
        timeout_ms = static_cast<int>(std::clamp<int64_t>(left + 1, 0, 60000));
      }
      const int n = ::poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0 && errno != EINTR) return;
      if (fds[0].revents) return settle_waiters(true);  // stop
      if (fds[1].revents & POLLIN) {
        const int fd = ::accept(listen_fd, nullptr, nullptr);
        if (fd >= 0) {
          const int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          clients[fd] = Client{fd, {}, -1};
        }
      }
      for (size_t i = 2; i < fds.size(); ++i)
        if (fds[i].revents) read_from(fds[i].fd);
      settle_waiters();
    }
  }
};

TcpStoreServer::TcpStoreServer(const std::string& host, int port, int world_size) : state_(new State) {
  RLF_CHECK(port >= 0 && port <= 65535, "MASTER_PORT must be in 0..65535; got ", port);
  state_->world_size = world_size;
  // Listen on every interface, as torchrun's store does: other nodes reach
  // rank 0 by MASTER_ADDR, whichever interface that names.
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool v6 = fd >= 0;
  if (!v6) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  RLF_CHECK(fd >= 0, "rendezvous store: socket() failed: ", errno_text());
  const int one = 1, zero = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EADDRINUSE)
      fail("rendezvous: MASTER_PORT ", port, " is already in use on this machine (rank 0 serves the store on ", host,
           ":", port, "); pick a free port with --master-port or MASTER_PORT, or stop the process holding it");
    fail("rendezvous: rank 0 cannot listen on port ", port, ": ", std::strerror(err));
  }
  if (::listen(fd, 128) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    fail("rendezvous: listen() on port ", port, " failed: ", why);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  state_->port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  state_->listen_fd = fd;
  if (::pipe2(state_->wake, O_CLOEXEC) != 0) {
    ::close(fd);
    fail("rendezvous store: pipe() failed: ", errno_text());
  }
  state_->thread = std::thread([s = state_.get()] { s->run(); });
}

TcpStoreServer::~TcpStoreServer() {
  const char stop = 1;
  (void)!::write(state_->wake[1], &stop, 1);
  state_->thread.join();
  for (const auto& [fd, c] : state_->clients) ::close(fd);
  ::close(state_->listen_fd);
  ::close(state_->wake[0]);
  ::close(state_->wake[1]);
}

int TcpStoreServer::port() const { return state_->port; }

// ---------------------------------------------------------------- client

namespace {

int connect_once(const std::string& host, int port, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) {
    why = std::string("cannot resolve MASTER_ADDR '") + host + "': " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    why = errno_text();
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd >= 0) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

}  // namespace

TcpStoreClient::TcpStoreClient(const std::string& host, int port, int rank, int world_size,
                               Milliseconds connect_timeout)
    : host_(host), port_(port) {
  const auto deadline = Clock::now() + connect_timeout;
  std::string why;
  for (;;) {
    fd_ = connect_once(host, port, why);
    if (fd_ >= 0) break;
    if (why.rfind("cannot resolve", 0) == 0) fail("rendezvous: ", why);
    if (Clock::now() >= deadline)
      fail("rendezvous: rank ", rank, " could not reach the store that rank 0 serves at ", where(), " within ",
           connect_timeout.count() / 1000.0, " s (", why, "); is rank 0 running, and are MASTER_ADDR and MASTER_PORT right?");
    std::this_thread::sleep_for(Milliseconds(50));
  }
  request({"hello", std::to_string(rank), std::to_string(world_size)}, connect_timeout);
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string TcpStoreClient::where() const { return "tcp://" + host_ + ":" + std::to_string(port_); }

std::vector<std::string> TcpStoreClient::request(const Fields& fields, Milliseconds reply_within) {
  RLF_CHECK(fd_ >= 0, "rendezvous store ", where(), ": the connection was closed after an earlier error");
  if (!send_all(fd_, encode(fields))) {
    const std::string why = errno_text();
    ::close(fd_);
    fd_ = -1;
    fail("rendezvous store ", where(), ": sending '", fields[0], "' failed (", why, "); rank 0 has probably exited");
  }
  // The server answers timeouts itself; the margin covers a server that died.
  const auto deadline = Clock::now() + reply_within + Milliseconds(10000);
  std::string in;
  Fields reply;
  size_t used = 0;
  while (!decode(in, reply, used)) {
    const auto left = std::chrono::duration_cast<Milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    const int n = left > 0 ? ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30))) : 0;
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) fail("rendezvous store ", where(), ": no answer to '", fields[0], "' from rank 0 in time");
    char buf[65536];
    const ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      ::close(fd_);
      fd_ = -1;
      fail("rendezvous store ", where(), ": rank 0 closed the connection during '", fields[0],
           "' (rank 0 exited or refused this rank)");
    }
    in.append(buf, static_cast<size_t>(got));
  }
  if (!reply.empty() && reply[0] == "error") fail("rendezvous: ", reply.size() > 1 ? reply[1] : "error");
  if (!reply.empty() && reply[0] == "timeout") {
    const Fields absent(reply.begin() + 1, reply.end());
    throw StoreTimeout("rendezvous store " + where() + ": timed out after " + seconds_text(reply_within) +
                           " s waiting for key(s) " + join_keys(absent),
                       absent);
  }
  if (!reply.empty() && reply[0] == "closed") {
    const Fields absent(reply.begin() + 1, reply.end());
    throw StoreClosed("rendezvous store " + where() + ": rank 0 stopped serving the store (it is exiting, or has failed) " +
                          "while this rank waited for key(s) " + join_keys(absent),
                      absent);
  }
  RLF_CHECK(!reply.empty() && reply[0] == "ok", "rendezvous store ", where(), ": unexpected reply to '", fields[0], "'");
  return Fields(reply.begin() + 1, reply.end());
}

void TcpStoreClient::set(const std::string& key, const std::vector<char>& value) {
  request({"set", key, std::string(value.begin(), value.end())}, Milliseconds(30000));
}

std::vector<char> TcpStoreClient::get(const std::string& key, Milliseconds timeout) {
  const Fields r = request({"get", key, std::to_string(timeout.count())}, timeout);
  RLF_CHECK(r.size() == 1, "rendezvous store ", where(), ": malformed reply to get");
  return std::vector<char>(r[0].begin(), r[0].end());
}

void TcpStoreClient::erase(const std::string& key) { request({"erase", key}, Milliseconds(30000)); }

void TcpStoreClient::wait(const std::vector<std::string>& keys, Milliseconds timeout) {
  Fields m{"wait", std::to_string(timeout.count())};
  m.insert(m.end(), keys.begin(), keys.end());
  request(m, timeout);
}


}  // namespace rlfarm::distributed
