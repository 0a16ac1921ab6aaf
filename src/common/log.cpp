#include "common/log.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace cifar::log {
namespace {
std::mutex g_mutex;
Level g_level = Level::Info;
bool g_tty = false;
bool g_bar_visible = false;  // a progress bar occupies the current terminal line

const char* level_name(Level l) {
  switch (l) {
    case Level::Debug: return "DEBUG";
    case Level::Info: return "INFO ";
    case Level::Warn: return "WARN ";
    case Level::Error: return "ERROR";
  }
  return "?";
}


void clear_bar_locked() {
  if (g_bar_visible) {
    std::fputs("\r\033[2K", stdout);
    g_bar_visible = false;
  }
}
}  // namespace

void init(Level level) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::setvbuf(stderr, nullptr, _IONBF, 0);
  g_level = level;
  g_tty = isatty(STDOUT_FILENO) == 1;
}

void set_level(Level level) { g_level = level; }

void write(Level level, const std::string& msg) {
  if (level < g_level) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  clear_bar_locked();
  std::string line = fmt::format("{} {} {}\n", format_now("%Y-%m-%dT%H:%M:%SZ", true), level_name(level), msg);
  if (level >= Level::Warn) {
    std::fflush(stdout);
    std::fputs(line.c_str(), stderr);
  } else {
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
  }
}

std::string format_now(const char* strftime_format, bool utc) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  if (utc) gmtime_r(&t, &tm);
  else localtime_r(&t, &tm);
  char buf[128];
  std::strftime(buf, sizeof buf, strftime_format, &tm);
  return buf;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02d}", s / 60, s % 60);
}

Progress::Progress(std::string label, int64_t total, std::string unit, int64_t plain_every)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), plain_every_(plain_every),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, int64_t items, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(items) / elapsed : 0.0;
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : NAN;
  if (g_tty) {
    if (done < total_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    constexpr int kWidth = 28;
    const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : 0;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < kWidth) bar += '>' + std::string(static_cast<size_t>(kWidth - filled - 1), ' ');
    std::lock_guard<std::mutex> lock(g_mutex);
    std::fprintf(stdout, "\r\033[2K%s [%s] %lld/%lld %.0f %s/s ETA %s %s", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), rate, unit_.c_str(),
                 format_duration(eta).c_str(), extra.c_str());
    std::fflush(stdout);
    g_bar_visible = true;
    active_ = true;
  } else if (plain_every_ > 0 && done - last_plain_ >= plain_every_ && done < total_) {
    last_plain_ = done;
    write(Level::Info, fmt::format("progress: {} step {}/{} {:.1f} {}/s eta {} {}", label_, done, total_, rate,
                                   unit_, format_duration(eta), extra));
  }
}

void Progress::finish() {
  if (!active_) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  clear_bar_locked();
  std::fflush(stdout);
  active_ = false;
}

}  // namespace cifar::log
