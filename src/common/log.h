// Logging for people and machines: timestamped lines on stdout (warnings and errors on stderr), line
// buffered so that pipes (SageMaker, CloudWatch) see every line at once, and a progress bar that is
// drawn only on a terminal; in a pipe or file progress becomes plain lines every N steps.
//
// Line format (one regex reads every line):  <ISO-8601 UTC time> <LEVEL> <message>
//   e.g. 2026-11-29T18:41:01Z INFO  epoch=3; lr=0.081234; train_loss=2.345600; ...
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace cifar::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

// Call once at program start: line-buffers stdout and detects whether stdout is a terminal.
void init(Level level = Level::Info);
void set_level(Level level);

void write(Level level, const std::string& msg);

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) { write(Level::Info, fmt::format(f, std::forward<Args>(args)...)); }
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) { write(Level::Warn, fmt::format(f, std::forward<Args>(args)...)); }
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) { write(Level::Error, fmt::format(f, std::forward<Args>(args)...)); }
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) { write(Level::Debug, fmt::format(f, std::forward<Args>(args)...)); }

// The current time formatted with strftime, in UTC or local time.
std::string format_now(const char* strftime_format, bool utc);

// "1:02:03" / "2:03" style durations.
std::string format_duration(double seconds);

// A progress display for a loop of known length. On a terminal: one redrawn bar with rate and ETA.
// Elsewhere: a plain line every `plain_every` steps (0 = never) and none at the end.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit, int64_t plain_every);
  ~Progress();
  // `done` steps completed, `items` (e.g. images) processed so far, `extra` shown after the rate.
  void update(int64_t done, int64_t items, const std::string& extra = "");
  void finish();

 private:
  std::string label_, unit_;
  int64_t total_, plain_every_, last_plain_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool active_ = false;
};

}  // namespace cifar::log
