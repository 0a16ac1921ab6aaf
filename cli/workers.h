// The built-in launcher of `cifar100 train --nproc N`: starts this host's N worker processes (this program
// again, with torchrun's variables RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
// prefixes each worker's log lines with its rank, forwards SIGTERM/SIGINT, and when a worker fails stops
// the others within a bounded time and exits non-zero, naming the rank and how it ended.
#pragma once
#include <string>

namespace cifar::cli {

struct WorkerPlan {
  int nproc = 1;          // workers on this host
  int nnodes = 1;         // hosts
  int node_rank = 0;      // this host's index
  std::string master_addr = "127.0.0.1";  // numeric
  int master_port = 0;    // 0: a free local port (one host only)
  std::string interface;  // GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME for the workers ("" = unset)
  std::string self_addr;  // CIFAR100_SELF_ADDR for the workers ("" = unset)
  std::string failure_file;  // SageMaker's output/failure, written when a worker fails ("" = none)
  double grace_seconds = 15;  // after a failure: SIGTERM to the others, SIGKILL after this long
};

// The program's own arguments, recorded by main() so that workers can be started with the same ones.
void set_program_args(int argc, char** argv);

// Runs the workers to the end; returns the exit status of the job.
int run_workers(const WorkerPlan& plan);

}  // namespace cifar::cli
