#include "common/signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace cifar::signals {
namespace {
std::atomic<int> g_signal{0};
std::atomic<const char*> g_message{
    "\nstop requested: finishing the current step, then writing a checkpoint (signal again to exit now)\n"};

void handler(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) {
    // Second signal: leave now. Only async-signal-safe calls here.
    const char msg[] = "\nsecond signal: exiting immediately (checkpoints on disk are complete or absent)\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(128 + sig);
  }
  const char* msg = g_message.load();
  ssize_t ignored = ::write(STDERR_FILENO, msg, std::strlen(msg));
  (void)ignored;
}
}  // namespace

void set_stop_message(const char* message) { g_message.store(message); }

void install_stop_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

bool stop_requested() { return g_signal.load(std::memory_order_relaxed) != 0; }
int stop_signal() { return g_signal.load(); }
void request_stop(int sig) { g_signal.store(sig); }
void clear() { g_signal.store(0); }

const char* name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "signal";
  }
}

}  // namespace cifar::signals
