// Helper for tests/parity/test_artifact.py and test_images.py:
//   artifact_dump model DEPTH WIDTH OUT_DIR   a WideResNet with non-trivial batch-norm statistics written as an
//       artifact (OUT_DIR/model) and reloaded; OUT_DIR/io.pt holds uint8 images N x 32 x 32 x 3 and the logits of
//       the inference engine on them (batch norm folded and not, fp32; folded bf16)
//   artifact_dump resize OUT_DIR IMAGE...     OUT_DIR/<i>.bin: the 32 x 32 x 3 bytes predict feeds the model for
//                                             the i-th IMAGE
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "common/fsutil.h"
#include "data/image_io.h"
#include "model/artifact.h"
#include "model/inference.h"
#include "support/torch_helpers.h"

using namespace cifar;

static int dump_model(int64_t depth, int64_t width, const std::string& out) {
  torch::set_num_threads(2);
  torch::manual_seed(321);
  model::WideResNet net(model::WrnConfig{depth, width, 0.0, 100});
  cifar::synth::randomize_batchnorm(*net);
  model::ArtifactInfo info = model::default_info(net->config());
  info.metrics = {{"test_top1", 0.5}};
  model::write_artifact(out + "/model", *net, info);
  const model::Artifact art = model::load_artifact(out + "/model");
  const at::Tensor images = torch::randint(0, 256, {16, 32, 32, 3}, torch::kUInt8);
  auto run = [&](bool fold, bool bf16) {
    model::InferenceOptions o;
    o.fold_batchnorm = fold;
    o.bf16 = bf16;
    return model::InferenceModel(art, o).logits_u8(images);
  };
  c10::Dict<std::string, at::Tensor> d;
  d.insert("images", images);
  d.insert("folded", run(true, false));
  d.insert("unfolded", run(false, false));
  d.insert("folded_bf16", run(true, true));
  const auto bytes = torch::pickle_save(d);
  fs::write_atomic(out + "/io.pt", bytes.data(), bytes.size());
  return 0;
}

int main(int argc, char** argv) {
  try {
    if (argc == 5 && std::string(argv[1]) == "model") return dump_model(std::atoll(argv[2]), std::atoll(argv[3]), argv[4]);
    if (argc >= 4 && std::string(argv[1]) == "resize") {
      for (int i = 3; i < argc; ++i) {
        const auto px = data::to_square(data::read_image(argv[i]), 32);
        fs::write_atomic(std::string(argv[2]) + "/" + std::to_string(i - 3) + ".bin", px.data(), px.size());
      }
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: artifact_dump model DEPTH WIDTH OUT_DIR | resize OUT_DIR IMAGE...\n");
  return 2;
}
