// Small helpers shared by the unit tests: a fresh temporary directory per test, and the message of the
// error a callable throws ("" when it throws nothing).
#pragma once
#include <unistd.h>

#include <exception>
#include <filesystem>
#include <string>

namespace cifar::synth {

inline std::string temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("cifar100-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace cifar::synth
