// Errors for library code: every failure at a boundary (file, network, user input) throws cifar::Error
// with a message that names the thing and says what to do. Only cli/ turns errors into exit codes.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace cifar {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A configuration or usage problem (exit status 2 in the CLI), as opposed to a runtime failure.
class ConfigError : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_config(fmt::format_string<Args...> f, Args&&... args) {
  throw ConfigError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace cifar
