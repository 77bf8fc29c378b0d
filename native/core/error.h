// Errors of the native core. The core never exits or aborts: every failed check
// throws rlfarm::Error, which the binding turns into a JavaScript Error.
#pragma once

#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace rlfarm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
inline void append_one(std::ostringstream& out, double v) {
  // Written as JavaScript writes numbers, since the messages reach JavaScript.
  if (v != v) out << "NaN";
  else if (v == std::numeric_limits<double>::infinity()) out << "Infinity";
  else if (v == -std::numeric_limits<double>::infinity()) out << "-Infinity";
  else out << v;
}
inline void append_one(std::ostringstream& out, float v) { append_one(out, static_cast<double>(v)); }
template <typename T>
void append_one(std::ostringstream& out, const T& v) {
  out << v;
}
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& out, const T& first, const Rest&... rest) {
  append_one(out, first);
  append(out, rest...);
}
}  // namespace detail

// Builds a message from any streamable parts: fail("ops.gae: gamma must be in [0, 1]; got ", g).
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream out;
  detail::append(out, parts...);
  throw Error(out.str());
}

}  // namespace rlfarm

#define RLF_CHECK(cond, ...)                   \
  do {                                         \
    if (!(cond)) ::rlfarm::fail(__VA_ARGS__);  \
  } while (0)
