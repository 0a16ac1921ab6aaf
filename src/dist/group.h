// Where this process stands in a distributed job (rank, world, master) and its c10d process group: a
// TCPStore rendezvous that names missing ranks, then ProcessGroupGloo on CPU (ProcessGroupNCCL for CUDA
// tensors when Torch has CUDA). Every collective has the job's timeout, so nothing waits forever.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace c10d {
class Store;
class Work;
}  // namespace c10d

namespace cifar::dist {

struct Topology {
  int rank = 0, world = 1;              // global
  int local_rank = 0, local_world = 1;  // on this host
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string interface;  // network interface for Gloo/NCCL ("" = by this host's address)
  std::string self_addr;  // this host's address for Gloo ("" = loopback when the master is local, else hostname)
  bool distributed() const { return world > 1; }
  std::string describe() const;
};

// torchrun's variables: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and
// GLOO_SOCKET_IFNAME / CIFAR100_SELF_ADDR). Nothing set: a single process. Throws Error on bad values.
Topology from_environment();
bool environment_has_rank();

// Resolves `host` to a numeric address, retrying until `timeout` (SageMaker host names resolve late).
// `overrides` maps names to addresses first (--resolve HOST=ADDR). Throws Error naming the host.
std::string resolve_host(const std::string& host, const std::map<std::string, std::string>& overrides,
                         std::chrono::seconds timeout);

class Group {
 public:
  // Rendezvous at master_addr:master_port (rank 0 serves the store), waiting up to `timeout` for every
  // rank; on timeout throws Error naming the ranks that never arrived. `device` picks Gloo or NCCL.
  Group(const Topology& topo, std::chrono::seconds timeout, c10::Device device);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return topo_.rank; }
  int world() const { return topo_.world; }

  // Sum over ranks, in place. The async form returns the work to wait() on.
  c10::intrusive_ptr<c10d::Work> allreduce_async(at::Tensor& t);
  void allreduce(at::Tensor& t);
  // Copies root's tensors into everyone's, in place.
  void broadcast(std::vector<at::Tensor>& tensors, int root = 0);
  // One 64-bit value from each rank, in rank order.
  std::vector<uint64_t> allgather(uint64_t value);
  // Waits for a work item with the group's timeout, turning failures into Error with the operation named.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);

 private:
  struct Impl;
  Topology topo_;
  std::chrono::seconds timeout_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cifar::dist
