// Parity helper: builds a WideResNet in C++, runs it on a fixed random batch in eval and train mode
// (fp32, dropout 0) and writes the weights (our state-dict file) and the inputs/logits for
// tests/parity/test_parity.py to compare against tools/reference/wrn.py.
//   parity_dump DEPTH WIDTH OUT_DIR
#include <torch/torch.h>

#include <cstdio>

#include "common/fsutil.h"
#include "model/weights.h"
#include "model/wide_resnet.h"
#include "support/torch_helpers.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: parity_dump DEPTH WIDTH OUT_DIR\n");
    return 2;
  }
  torch::set_num_threads(2);
  torch::manual_seed(123);
  cifar::model::WideResNet net(cifar::model::WrnConfig{std::atoll(argv[1]), std::atoll(argv[2]), 0.0, 100});
  const std::string out = argv[3];
  cifar::synth::randomize_batchnorm(*net);  // eval mode then really uses the running buffers
  cifar::model::save_weights(*net, out + "/weights.pt");
  torch::Tensor x = torch::randn({8, 3, 32, 32});
  net->eval();
  torch::Tensor eval_logits;
  {
    torch::NoGradGuard g;
    eval_logits = net->forward(x);
  }
  net->train();
  torch::Tensor train_logits = net->forward(x).detach();
  c10::Dict<std::string, at::Tensor> d;
  d.insert("input", x);
  d.insert("eval_logits", eval_logits);
  d.insert("train_logits", train_logits);
  // Every buffer after one training-mode pass (the running mean and variance of every batch norm, and its
  // batch count), to compare the batch-norm update rule layer by layer.
  for (const auto& [name, t] : cifar::model::state_dict(*net))
    if (name.find("running_") != std::string::npos || name.find("num_batches_tracked") != std::string::npos)
      d.insert("after/" + name, t.clone());
  const auto bytes = torch::pickle_save(d);
  cifar::fs::write_atomic(out + "/io.pt", bytes.data(), bytes.size());
  std::printf("wrote %s/weights.pt and %s/io.pt\n", out.c_str(), out.c_str());
  return 0;
}
