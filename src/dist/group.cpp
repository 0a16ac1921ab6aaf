#include "dist/group.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#define CIFAR100_COMPAT_C10D 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef CIFAR100_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef CIFAR100_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include "common/error.h"
#include "common/log.h"
#include "model/torch_compat.h"

namespace cifar::dist {

namespace {
using Clock = std::chrono::steady_clock;

int env_int(const char* name, int fallback, int min) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end || x < min || x > 1 << 20) fail("environment variable {}='{}' is not a whole number >= {}", name, v, min);
  return static_cast<int>(x);
}

std::string env_str(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string hostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}
}  // namespace

std::string Topology::describe() const {
  return fmt::format("rank {} of {} (local {} of {}), master {}:{}{}", rank, world, local_rank, local_world,
                     master_addr, master_port, interface.empty() ? "" : ", interface " + interface);
}

bool environment_has_rank() { return std::getenv("RANK") && std::getenv("WORLD_SIZE"); }

Topology from_environment() {
  Topology t;
  if (!environment_has_rank()) return t;
  t.world = env_int("WORLD_SIZE", 1, 1);
  t.rank = env_int("RANK", 0, 0);
  if (t.rank >= t.world) fail("environment: RANK={} must be below WORLD_SIZE={}", t.rank, t.world);
  t.local_world = env_int("LOCAL_WORLD_SIZE", t.world, 1);
  t.local_rank = env_int("LOCAL_RANK", t.rank % t.local_world, 0);
  if (t.local_rank >= t.local_world)
    fail("environment: LOCAL_RANK={} must be below LOCAL_WORLD_SIZE={}", t.local_rank, t.local_world);
  t.master_addr = env_str("MASTER_ADDR", "127.0.0.1");
  t.master_port = env_int("MASTER_PORT", 29500, 1);
  if (t.master_port > 65535) fail("environment: MASTER_PORT={} is not a TCP port", t.master_port);
  t.interface = env_str("GLOO_SOCKET_IFNAME", "");
  t.self_addr = env_str("CIFAR100_SELF_ADDR", "");
  return t;
}

std::string resolve_host(const std::string& host, const std::map<std::string, std::string>& overrides,
                         std::chrono::seconds timeout) {
  if (auto it = overrides.find(host); it != overrides.end()) return it->second;
  const auto deadline = Clock::now() + timeout;
  int attempt = 0;
  for (;;) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc == 0 && res) {
      char buf[NI_MAXHOST];
      const int nrc = ::getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST);
      ::freeaddrinfo(res);
      if (nrc == 0) return buf;
    }
    if (Clock::now() >= deadline)
      fail("cannot resolve host '{}' after {} attempts over {} s ({}); pass --resolve {}=ADDRESS if it has no DNS name",
           host, attempt + 1, timeout.count(), rc ? gai_strerror(rc) : "no address", host);
    if (attempt++ == 0) log::info("waiting for host name '{}' to resolve", host);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<compat::Collectives> pg;
};

Group::Group(const Topology& topo, std::chrono::seconds timeout, c10::Device device)
    : topo_(topo), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  const auto t0 = Clock::now();
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(topo.master_port);
  // Under torchrun its agent already serves the store on MASTER_PORT, and every rank is a client.
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  const bool agent_store = agent && std::string(agent) == "True";
  so.isServer = topo.rank == 0 && !agent_store;
  so.waitWorkers = false;
  so.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(topo.master_addr, so);
  } catch (const std::exception& e) {
    if (so.isServer)
      fail("rank 0 cannot serve the rendezvous on {}:{} ({}); is the port free? Choose another with --master-port or "
           "MASTER_PORT",
           topo.master_addr, topo.master_port, e.what());
    fail("rank {} cannot reach the rendezvous at {}:{} within {} s ({}): is rank 0 running, and are MASTER_ADDR and "
         "MASTER_PORT right?",
         topo.rank, topo.master_addr, topo.master_port, timeout.count(), e.what());
  }
  // Every rank announces itself; all wait for all, and name the missing ones on timeout.
  // Keys are per attempt: torchrun restarts workers against the same store.
  const std::string ns = "cifar100/" + env_str("TORCHELASTIC_RESTART_COUNT", "0") + "/";
  auto key = [&](int r) { return ns + "arrived/" + std::to_string(r); };
  const std::string me = fmt::format("{} pid {}", hostname(), ::getpid());
  impl_->store->set(key(topo.rank), std::vector<uint8_t>(me.begin(), me.end()));
  std::vector<int> missing;
  for (;;) {
    missing.clear();
    for (int r = 0; r < topo.world; ++r)
      if (!impl_->store->check({key(r)})) missing.push_back(r);
    if (missing.empty()) break;
    if (Clock::now() - t0 >= timeout) {
      std::string names;
      for (size_t i = 0; i < missing.size() && i < 16; ++i) names += (i ? ", " : "") + std::to_string(missing[i]);
      if (missing.size() > 16) names += ", ...";
      fail("the rendezvous at {}:{} timed out after {} s: {} of {} ranks arrived; missing rank{} {}. Start every "
           "rank (or raise dist_timeout)",
           topo.master_addr, topo.master_port, timeout.count(), topo.world - static_cast<int>(missing.size()),
           topo.world, missing.size() > 1 ? "s" : "", names);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>(ns + "pg", impl_->store);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  if (device.is_cuda()) {
#ifdef CIFAR100_WITH_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = ms;
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, topo.rank, topo.world, opts);
#else
    fail("distributed training on CUDA needs NCCL, and this build of cifar100 has none");
#endif
  } else {
#ifndef CIFAR100_WITH_GLOO
    fail("distributed training on CPU needs Gloo, and this build of cifar100 has none (its LibTorch had no Gloo "
         "headers)");
#else
    auto opts = c10d::ProcessGroupGloo::Options::create(ms);
    std::string how;
    if (!topo.interface.empty()) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(topo.interface));
      how = "interface " + topo.interface;
    } else {
      const bool local = topo.master_addr == "127.0.0.1" || topo.master_addr == "localhost";
      const std::string addr = !topo.self_addr.empty() ? topo.self_addr : local ? "127.0.0.1" : "";
      if (!addr.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
      else opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      how = addr.empty() ? "this host's name" : addr;
    }
    opts->threads = 2;
    try {
      impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, topo.rank, topo.world, opts);
    } catch (const std::exception& e) {
      fail("rank {}: the Gloo process group over {} could not connect all {} ranks: {}", topo.rank, how, topo.world,
           e.what());
    }
#endif
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  log::info("process group ready: {} ranks, {} ({:.2f} s)", topo.world, device.is_cuda() ? "NCCL" : "Gloo", secs);
}

Group::~Group() = default;

void Group::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait(std::chrono::duration_cast<std::chrono::milliseconds>(timeout_));
  } catch (const std::exception& e) {
    fail("rank {}: {} failed (a rank died or the network failed; the collective timeout is {} s): {}", topo_.rank, what,
         timeout_.count(), e.what());
  }
}

c10::intrusive_ptr<c10d::Work> Group::allreduce_async(at::Tensor& t) {
  std::vector<at::Tensor> v{t};
  return impl_->pg->allreduce(v);
}

void Group::allreduce(at::Tensor& t) { wait(allreduce_async(t), "all-reduce"); }

void Group::broadcast(std::vector<at::Tensor>& tensors, int root) {
  // One flat message per dtype, in logical element order (memory formats may differ between ranks).
  torch::NoGradGuard no_grad;
  std::map<c10::ScalarType, std::vector<at::Tensor*>> by_type;
  for (auto& t : tensors)
    if (t.defined()) by_type[t.scalar_type()].push_back(&t);
  for (auto& [type, ts] : by_type) {
    std::vector<at::Tensor> flat_parts;
    for (auto* t : ts) flat_parts.push_back(t->reshape({-1}));
    std::vector<at::Tensor> v{torch::cat(flat_parts)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    wait(impl_->pg->broadcast(v, o), "broadcast");
    int64_t off = 0;
    for (auto* t : ts) {
      t->copy_(v[0].narrow(0, off, t->numel()).view(t->sizes()));
      off += t->numel();
    }
  }
}

std::vector<uint64_t> Group::allgather(uint64_t value) {
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  std::vector<at::Tensor> in{torch::full({1}, static_cast<int64_t>(value), opts)};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < topo_.world; ++r) out[0].push_back(torch::empty({1}, opts));
  wait(impl_->pg->allgather(out, in), "all-gather");
  std::vector<uint64_t> values;
  for (auto& t : out[0]) values.push_back(static_cast<uint64_t>(t.item<int64_t>()));
  return values;
}

}  // namespace cifar::dist
