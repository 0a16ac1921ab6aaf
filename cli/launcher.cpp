// `cifar100`, the command users run: a small program without LibTorch that execs cifar100-engine (the real
// program, installed beside it) with the same arguments, in the same process. For `serve` it first binds and
// listens on the server's port and hands the socket over (CIFAR100_LISTEN_FD), so that connections are
// accepted (queued by the kernel) within milliseconds of start instead of after LibTorch's start-up, which
// takes about half a second: SageMaker expects an endpoint container to accept connections within 250 ms.
// Should the port found here differ from the one the engine resolves, the engine closes the socket and binds
// its own; if binding fails here, the engine reports the error.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// The port and host `serve` will use: --port/-p, else $SAGEMAKER_BIND_TO_PORT, else 8080; --host, else 0.0.0.0.
bool serve_address(int argc, char** argv, std::string& host, std::string& port) {
  host = "0.0.0.0";
  const char* env = std::getenv("SAGEMAKER_BIND_TO_PORT");
  port = env && *env ? env : "8080";
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const std::string& name, std::string& out) {
      if (a == name && i + 1 < argc) {
        out = argv[++i];
        return true;
      }
      if (a.rfind(name + "=", 0) != 0) return false;
      out = a.substr(name.size() + 1);
      return true;
    };
    if (a == "--help" || a == "-h") return false;
    if (value("--port", port) || value("-p", port) || value("--host", host)) continue;
    if (a.size() > 2 && a.rfind("-p", 0) == 0 && a[2] != '-') port = a.substr(2);
  }
  return true;
}

int listen_early(const std::string& host, const std::string& port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) return -1;
  int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  const int yes = 1;
  if (fd >= 0 && (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) != 0 ||
                  ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0)) {
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::perror("cifar100: cannot find its own path (/proc/self/exe)");
    return 1;
  }
  self[n] = '\0';
  std::string engine(self);
  engine = engine.substr(0, engine.rfind('/') + 1) + "cifar100-engine";

  std::string host, port;
  ::unsetenv("CIFAR100_LISTEN_FD");
  if (argc > 1 && std::strcmp(argv[1], "serve") == 0 && serve_address(argc, argv, host, port)) {
    const int fd = listen_early(host, port);
    if (fd >= 0) {
      ::setenv("CIFAR100_LISTEN_FD", std::to_string(fd).c_str(), 1);
      ::setenv("CIFAR100_LISTEN_ADDR", (host + " " + port).c_str(), 1);
    }
  }
  ::execv(engine.c_str(), argv);
  std::fprintf(stderr, "cifar100: cannot run %s: %s (it is installed beside cifar100)\n", engine.c_str(),
               std::strerror(errno));
  return 1;
}
