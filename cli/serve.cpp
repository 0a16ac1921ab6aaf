// `cifar100 serve`: the SageMaker-compatible inference server (see src/serve/server.h).
#include <cstdlib>

#include <algorithm>

#include "cli/commands.h"
#include "cloud/sagemaker.h"
#include "common/log.h"
#include "common/error.h"
#include "common/signals.h"
#include "model/device.h"
#include "serve/server.h"

namespace cifar::cli {

namespace {
namespace sagemaker = cloud::sagemaker;

struct ServeArgs {
  serve::ServerOptions opts;
  RuntimeArgs rt;
  std::string device;
  std::vector<std::string> sets;
  int port = -1;
  int workers = 0;    // 0: $SAGEMAKER_MODEL_SERVER_WORKERS, else 1
  int timeout_s = 0;  // 0: $SAGEMAKER_MODEL_SERVER_TIMEOUT, else 60 (600 under Batch Transform)
  int request_deadline_s = 0;  // 0: 30 s, 300 s under Batch Transform (payloads up to 100 MB)
  double max_wait_ms = 0.0;  // greedy: a pass starts as soon as the engine is free; load batches by itself
};

int run_serve(ServeArgs a) {
  signals::install_stop_handlers();
  signals::set_stop_message("\nstop requested: answering the requests in flight, then exiting (signal again to exit now)\n");
  ConfigArgs ca;
  ca.sets = a.sets;
  ca.device = a.device;
  const Config cfg = resolve(with_runtime_args(ca, a.rt));
  const model::Runtime rt = model::setup_runtime(cfg);
  a.opts.engine.device = rt.device;
  a.opts.engine.bf16 = rt.bf16;
  a.opts.engine.channels_last = rt.channels_last;
  // The hosting contract's variables: command-line options win over them.
  const sagemaker::ServingEnv env = sagemaker::read_serving_env();
  if (a.port >= 0) a.opts.port = a.port;
  else if (env.bind_port) a.opts.port = *env.bind_port;
  if (env.safe_ports)
    log::info("SAGEMAKER_SAFE_PORT_RANGE {}-{}: serve opens no port besides {}", env.safe_ports->first,
              env.safe_ports->second, a.opts.port);
  if (env.max_payload_mb) a.opts.max_body = static_cast<size_t>(*env.max_payload_mb == 0 ? 100 : *env.max_payload_mb) << 20;
  if (!env.batch_strategy.empty()) a.opts.batch_strategy = env.batch_strategy;
  if (env.max_concurrent_transforms) a.opts.max_concurrent_transforms = *env.max_concurrent_transforms;
  const int workers = a.workers > 0 ? a.workers : env.workers.value_or(1);
  a.opts.batch.workers = workers;
  if (workers > 1) a.opts.batch.threads_per_worker = std::max(1, rt.threads / workers);
  // Batch Transform waits up to 600 s for an invocation, a real-time endpoint 60 s.
  a.opts.request_timeout_s = a.timeout_s > 0 ? a.timeout_s : env.timeout_s.value_or(env.batch ? 600 : 60);
  a.opts.request_deadline_s = a.request_deadline_s > 0 ? a.request_deadline_s : env.batch ? 300 : 30;
  if (env.batch)
    log::info("Batch Transform (SAGEMAKER_BATCH): strategy {}, payloads up to {} MiB, {} concurrent transforms",
              a.opts.batch_strategy, a.opts.max_body >> 20,
              a.opts.max_concurrent_transforms > 0 ? a.opts.max_concurrent_transforms : a.opts.http_threads);
  a.opts.batch.max_wait = std::chrono::microseconds(static_cast<int64_t>(a.max_wait_ms * 1000));
  return serve::run_server(a.opts, [] { return signals::stop_requested(); });
}
}  // namespace

Runner add_serve(CLI::App& root) {
  auto a = std::make_shared<ServeArgs>();
  auto& o = a->opts;
  CLI::App* sub = root.add_subcommand("serve", "serve a model artifact over HTTP (SageMaker hosting contract: /ping, "
                                               "/invocations, /execution-parameters; plus /metrics and a web page)");
  o.model_dir.clear();
  sub->add_option("--model,-m", o.model_dir,
                  "model artifact directory, a run directory (uses its model/), a model.tar.gz, or any of these at s3://; default $SM_MODEL_DIR, else "
                  "$SAGEMAKER_BASE_DIR/model, else /opt/ml/model");
  sub->add_option("--port,-p", a->port, "TCP port (default $SAGEMAKER_BIND_TO_PORT, else 8080)")->check(CLI::Range(1, 65535));
  sub->add_option("--host", o.host, "address to listen on")->capture_default_str();
  sub->add_option("--max-batch", o.batch.max_batch, "images per forward pass (dynamic batching)")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  sub->add_option("--max-wait-ms", a->max_wait_ms, "how long the first queued image waits for others to batch with")
      ->check(CLI::Range(0.0, 1000.0))->capture_default_str();
  sub->add_option("--queue", o.batch.queue_capacity, "images allowed to wait; beyond, 503 with Retry-After")
      ->check(CLI::Range(1, 1000000))->capture_default_str();
  sub->add_option("--http-threads", o.http_threads,
                  "requests handled at once (idle and slow connections hold no thread)")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  sub->add_option("--max-pending", o.max_pending, "received requests waiting for a thread; beyond, 503 with Retry-After")
      ->check(CLI::Range(1, 65536))->capture_default_str();
  sub->add_option("--max-connections", o.max_connections,
                  "open connections; beyond, new ones wait in the kernel's listen backlog")
      ->check(CLI::Range(1, 1000000))->capture_default_str();
  sub->add_option("--max-images", o.max_images, "images per request")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--read-timeout", o.read_timeout_s, "seconds a client may stall while sending or receiving")
      ->check(CLI::Range(1, 3600))->capture_default_str();
  sub->add_option("--request-deadline", a->request_deadline_s,
                  "seconds a whole request (headers and body) may take to arrive (default 30; 300 under Batch Transform)")
      ->check(CLI::Range(1, 3600));
  sub->add_option("--idle-timeout", o.idle_timeout_s, "seconds an idle keep-alive connection is kept")
      ->check(CLI::Range(1, 3600))->capture_default_str();
  sub->add_option("--workers", a->workers,
                  "concurrent forward passes, sharing the CPU threads (default $SAGEMAKER_MODEL_SERVER_WORKERS, else 1)")
      ->check(CLI::Range(1, 64));
  sub->add_option("--timeout", a->timeout_s,
                  "seconds an invocation may take before it is answered 504 (default $SAGEMAKER_MODEL_SERVER_TIMEOUT, "
                  "else 60; 600 under Batch Transform)")
      ->check(CLI::Range(1, 3600));
  sub->add_option("--max-top-k", o.max_top_k, "largest top_k a request may ask for")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--device", a->device, "auto, cpu or cuda (env CIFAR100_DEVICE)");
  sub->add_option("--set,-s", a->sets, "override a config key: --set key=value (repeatable)")->allow_extra_args(false);
  add_runtime_args(sub, a->rt, /*with_batch_size=*/false);
  return [a] {
    ServeArgs copy = *a;
    copy.opts.model_dir = find_model_dir(copy.opts.model_dir.empty() ? sagemaker::model_dir() : copy.opts.model_dir);
    return run_serve(copy);
  };
}

}  // namespace cifar::cli
