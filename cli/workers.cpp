#include "cli/workers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"

namespace cifar::cli {

namespace {
std::vector<std::string> g_args;
int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  const int saved = errno;
  ssize_t ignored = ::write(g_signal_pipe[1], &b, 1);
  (void)ignored;
  errno = saved;
}

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    fail("launcher: cannot find a free local port for the rendezvous: {}", std::strerror(errno));
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    const char* n = sigabbrev_np(s);
    return fmt::format("was killed by signal {}{}", s, n ? fmt::format(" (SIG{})", n) : "");
  }
  return fmt::format("exited with status {}", WEXITSTATUS(status));
}

struct Worker {
  int rank = 0, local_rank = 0;
  pid_t pid = -1;
  int out = -1, err = -1;
  std::string out_buf, err_buf;
  bool running = false;
  int status = 0;
};

// Writes complete lines of `buf` to `fd` with the rank prefix; with `all`, the rest too.
void flush_lines(std::string& buf, int fd, const std::string& prefix, bool all) {
  size_t start = 0;
  for (;;) {
    const size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    const std::string line = prefix + buf.substr(start, nl - start + 1);
    ssize_t ignored = ::write(fd, line.data(), line.size());
    (void)ignored;
    start = nl + 1;
  }
  buf.erase(0, start);
  if (all && !buf.empty()) {
    const std::string line = prefix + buf + "\n";
    ssize_t ignored = ::write(fd, line.data(), line.size());
    (void)ignored;
    buf.clear();
  }
}
}  // namespace

void set_program_args(int argc, char** argv) { g_args.assign(argv, argv + argc); }

int run_workers(const WorkerPlan& plan) {
  using Clock = std::chrono::steady_clock;
  const int world = plan.nproc * plan.nnodes;
  const int port = plan.master_port > 0 ? plan.master_port : free_local_port();
  if (plan.nnodes > 1 && plan.master_port <= 0) fail("launcher: a job over several hosts needs --master-port");
  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) fail("launcher: pipe: {}", std::strerror(errno));
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : {SIGTERM, SIGINT, SIGCHLD}) ::sigaction(s, &sa, nullptr);
  std::fflush(stdout);
  std::fflush(stderr);

  log::info("starting {} worker{} on this host (ranks {}-{} of {}), rendezvous at {}:{}", plan.nproc,
            plan.nproc > 1 ? "s" : "", plan.node_rank * plan.nproc, plan.node_rank * plan.nproc + plan.nproc - 1,
            world, plan.master_addr, port);
  std::vector<Worker> workers(static_cast<size_t>(plan.nproc));
  const pid_t parent = ::getpid();
  for (int lr = 0; lr < plan.nproc; ++lr) {
    Worker& w = workers[static_cast<size_t>(lr)];
    w.local_rank = lr;
    w.rank = plan.node_rank * plan.nproc + lr;
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<std::string> env;
    const char* drop[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=",
                          "GROUP_RANK=", "CIFAR100_SELF_ADDR="};
    for (char** e = environ; *e; ++e) {
      bool keep = true;
      for (const char* d : drop) keep = keep && std::strncmp(*e, d, std::strlen(d)) != 0;
      if (keep) env.emplace_back(*e);
    }
    env.push_back("RANK=" + std::to_string(w.rank));
    env.push_back("WORLD_SIZE=" + std::to_string(world));
    env.push_back("LOCAL_RANK=" + std::to_string(lr));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(plan.nproc));
    env.push_back("GROUP_RANK=" + std::to_string(plan.node_rank));
    env.push_back("MASTER_ADDR=" + plan.master_addr);
    env.push_back("MASTER_PORT=" + std::to_string(port));
    if (!plan.self_addr.empty()) env.push_back("CIFAR100_SELF_ADDR=" + plan.self_addr);
    if (!plan.interface.empty()) {
      if (!std::getenv("GLOO_SOCKET_IFNAME")) env.push_back("GLOO_SOCKET_IFNAME=" + plan.interface);
      if (!std::getenv("NCCL_SOCKET_IFNAME")) env.push_back("NCCL_SOCKET_IFNAME=" + plan.interface);
    }
    std::vector<char*> envp, argv;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (auto& a : g_args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) fail("launcher: pipe: {}", std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid < 0) fail("launcher: cannot start rank {}: {}", w.rank, std::strerror(errno));
    if (pid == 0) {
      ::setpgid(0, 0);                     // terminal signals reach the launcher only; it forwards them once
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a launcher killed outright takes its workers along
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      for (int s : {SIGTERM, SIGINT, SIGCHLD}) ::sigaction(s, &dfl, nullptr);
      ::execve("/proc/self/exe", argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    w.pid = pid;
    w.out = out[0];
    w.err = err[0];
    w.running = true;
    log::info("rank {} started (pid {})", w.rank, pid);
  }

  int forwarded = 0;  // the stop signal passed on to the workers
  int failed = -1;    // index of the first worker that failed
  Clock::time_point kill_at{};
  bool killed = false;
  auto alive = [&] {
    for (auto& w : workers)
      if (w.running) return true;
    return false;
  };
  auto open_pipes = [&] {
    for (auto& w : workers)
      if (w.out >= 0 || w.err >= 0) return true;
    return false;
  };
  while (alive() || open_pipes()) {
    std::vector<pollfd> fds{{g_signal_pipe[0], POLLIN, 0}};
    std::vector<std::pair<Worker*, bool>> owners{{nullptr, false}};
    for (auto& w : workers) {
      if (w.out >= 0) {
        fds.push_back({w.out, POLLIN, 0});
        owners.emplace_back(&w, false);
      }
      if (w.err >= 0) {
        fds.push_back({w.err, POLLIN, 0});
        owners.emplace_back(&w, true);
      }
    }
    ::poll(fds.data(), fds.size(), 200);
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Worker& w = *owners[i].first;
      const bool is_err = owners[i].second;
      char buf[65536];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      std::string& acc = is_err ? w.err_buf : w.out_buf;
      const std::string prefix = fmt::format("[rank {}] ", w.rank);
      if (n > 0) {
        acc.append(buf, static_cast<size_t>(n));
        flush_lines(acc, is_err ? STDERR_FILENO : STDOUT_FILENO, prefix, false);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        flush_lines(acc, is_err ? STDERR_FILENO : STDOUT_FILENO, prefix, true);
        ::close(fds[i].fd);
        (is_err ? w.err : w.out) = -1;
      }
    }
    unsigned char sigs[64];
    const ssize_t ns = ::read(g_signal_pipe[0], sigs, sizeof sigs);
    for (ssize_t i = 0; i < ns; ++i) {
      const int s = sigs[i];
      if (s != SIGTERM && s != SIGINT) continue;
      if (!forwarded) forwarded = s;
      log::info("launcher: passing {} to the workers", s == SIGTERM ? "SIGTERM" : "SIGINT");
      for (auto& w : workers)
        if (w.running) ::kill(w.pid, s);
    }
    // Reap every worker that ended; a signal death outranks the exit errors it causes in the others.
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      for (size_t k = 0; k < workers.size(); ++k) {
        Worker& w = workers[k];
        if (w.pid != pid) continue;
        w.running = false;
        w.status = status;
        const bool stop_exit = forwarded && WIFEXITED(status) &&
                               (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 128 + forwarded);
        const bool ok = (WIFEXITED(status) && WEXITSTATUS(status) == 0) || stop_exit;
        if (!ok && (failed < 0 || (WIFSIGNALED(status) && !WIFSIGNALED(workers[static_cast<size_t>(failed)].status))))
          failed = static_cast<int>(k);
      }
    }
    if (failed >= 0 && kill_at == Clock::time_point{}) {
      kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(plan.grace_seconds * 1000));
      for (auto& w : workers)
        if (w.running) ::kill(w.pid, SIGTERM);
    }
    if (failed >= 0 && !killed && Clock::now() >= kill_at) {
      killed = true;
      for (auto& w : workers)
        if (w.running) {
          log::warn("launcher: rank {} did not stop within {:.0f} s of SIGTERM: killing it", w.rank, plan.grace_seconds);
          ::kill(w.pid, SIGKILL);
        }
    }
  }
  if (failed >= 0) {
    const Worker& w = workers[static_cast<size_t>(failed)];
    const std::string msg = fmt::format("rank {} (local rank {}, pid {}) {}; the other ranks were stopped", w.rank,
                                        w.local_rank, w.pid, describe_status(w.status));
    log::error("{}", msg);
    if (!plan.failure_file.empty() && !fs::exists(plan.failure_file)) {
      try {
        fs::write_atomic(plan.failure_file, "cifar100 train: " + msg);
      } catch (const std::exception&) {
      }
    }
    if (WIFSIGNALED(w.status)) return 128 + WTERMSIG(w.status);
    return WEXITSTATUS(w.status) ? WEXITSTATUS(w.status) : 1;
  }
  if (forwarded == SIGINT) return 130;
  return 0;
}

}  // namespace cifar::cli
