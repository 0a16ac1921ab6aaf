// `cifar100 predict IMAGE...`: top-k classes of PNG/JPEG files with a model artifact. A bad file gets its own
// error and the others are still predicted; the exit status is 1 when any file failed.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cloud/storage.h"
#include "common/error.h"
#include "common/log.h"
#include "data/image_io.h"
#include "model/artifact.h"
#include "model/device.h"
#include "model/inference.h"

namespace cifar::cli {

namespace {

struct PredictArgs {
  RuntimeArgs rt;
  std::vector<std::string> sets;
  std::string device;
  std::string model = "/opt/ml/model";
  int top_k = 5;
  bool json = false;
  std::vector<std::string> images;
};

struct Item {
  std::string file;
  data::Image image;  // pixels released after resizing; width/height/format kept
  std::vector<uint8_t> square;
  std::string error;
  std::vector<std::pair<int64_t, float>> top;
};

int run_predict(const PredictArgs& a) {
  if (a.json) log::set_level(log::Level::Warn);  // stdout carries the JSON alone (downloads log at info level)
  ConfigArgs ca;
  ca.sets = a.sets;
  ca.device = a.device;
  const Config cfg = resolve(with_runtime_args(ca, a.rt));
  const model::Runtime rt = model::setup_runtime(cfg);
  const std::string dir = find_model_dir(a.model);
  const model::Artifact art = model::load_artifact(dir);
  model::InferenceOptions io;
  io.device = rt.device;
  io.bf16 = rt.bf16;
  io.channels_last = rt.channels_last;
  const model::InferenceModel engine(art, io);
  const int64_t classes = art.info.arch.num_classes;
  const int64_t k = std::min<int64_t>(a.top_k, classes);
  const int size = art.info.image_size;
  if (!a.json) log::info("model {} ({})", dir, engine.describe());

  std::vector<Item> items(a.images.size());
  std::vector<size_t> good;
  for (size_t i = 0; i < a.images.size(); ++i) {
    items[i].file = a.images[i];
    try {
      items[i].image = data::read_image(cloud::localize_file(a.images[i]));
      items[i].square = data::to_square(items[i].image, size);
      items[i].image.rgb = {};
      good.push_back(i);
    } catch (const std::exception& e) {
      items[i].error = e.what();
    }
  }
  const int64_t batch = cfg.i("eval_batch_size");
  for (size_t b0 = 0; b0 < good.size(); b0 += static_cast<size_t>(batch)) {
    const size_t b = std::min(good.size() - b0, static_cast<size_t>(batch));
    at::Tensor x = torch::empty({static_cast<int64_t>(b), size, size, 3}, torch::kUInt8);
    for (size_t i = 0; i < b; ++i)
      std::memcpy(x[static_cast<int64_t>(i)].data_ptr(), items[good[b0 + i]].square.data(), items[good[b0 + i]].square.size());
    const at::Tensor probs = torch::softmax(engine.logits_u8(x), 1);
    const auto [p, idx] = probs.topk(k, 1);
    for (size_t i = 0; i < b; ++i) {
      Item& it = items[good[b0 + i]];
      for (int64_t j = 0; j < k; ++j)
        it.top.emplace_back(idx[static_cast<int64_t>(i)][j].item<int64_t>(), p[static_cast<int64_t>(i)][j].item<float>());
    }
  }

  size_t failed = 0;
  nlohmann::json out = nlohmann::json::array();
  for (const Item& it : items) {
    if (!it.error.empty()) {
      ++failed;
      if (a.json)
        out.push_back({{"file", it.file}, {"error", it.error}});
      else
        log::error("{}", it.error);
      continue;
    }
    if (a.json) {
      nlohmann::json top = nlohmann::json::array();
      for (const auto& [c, prob] : it.top) {
        nlohmann::json e = {{"class", c}, {"name", art.info.class_names[static_cast<size_t>(c)]}, {"probability", prob}};
        if (!art.info.coarse_names.empty())
          e["superclass"] = art.info.coarse_names[static_cast<size_t>(art.info.fine_to_coarse[static_cast<size_t>(c)])];
        top.push_back(e);
      }
      out.push_back({{"file", it.file},
                     {"format", data::format_name(it.image.format)},
                     {"width", it.image.width},
                     {"height", it.image.height},
                     {"top_k", top}});
    } else {
      std::printf("%s  (%dx%d %s)\n", it.file.c_str(), it.image.width, it.image.height, data::format_name(it.image.format));
      for (size_t j = 0; j < it.top.size(); ++j)
        std::printf("  %2zu  %-20s %7.2f%%\n", j + 1, art.info.class_names[static_cast<size_t>(it.top[j].first)].c_str(),
                    100.0 * it.top[j].second);
    }
  }
  if (a.json) {
    const nlohmann::json doc = {{"model", dir},
                                {"architecture", art.info.arch.name()},
                                {"preprocessing", fmt::format("centre square crop, antialiased bilinear resize to {}x{} "
                                                              "(PIL BILINEAR), RGB",
                                                              size, size)},
                                {"predictions", out},
                                {"failed", failed}};
    std::printf("%s\n", doc.dump(2).c_str());
  } else if (failed) {
    log::error("{} of {} images could not be predicted", failed, items.size());
  }
  std::fflush(stdout);
  return failed ? 1 : 0;
}
}  // namespace

Runner add_predict(CLI::App& root) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* sub = root.add_subcommand(
      "predict", "top-k classes of PNG/JPEG images (any size: centre square crop, antialiased bilinear resize to 32x32)");
  sub->add_option("--model,-m", a->model, "model artifact directory, a run directory (uses its model/), a model.tar.gz, or any of these at s3://")
      ->capture_default_str();
  sub->add_option("--top-k,-k", a->top_k, "classes to show per image")->check(CLI::Range(1, 100))->capture_default_str();
  sub->add_flag("--json", a->json, "print JSON (per image: file, size, top-k with names and probabilities, or error)");
  sub->add_option("--set,-s", a->sets, "override a config key: --set key=value (repeatable)")->allow_extra_args(false);
  sub->add_option("--device", a->device, "auto, cpu or cuda (env CIFAR100_DEVICE)");
  add_runtime_args(sub, a->rt);
  sub->add_option("images", a->images, "PNG or JPEG files (paths or s3:// addresses)")->required();
  return [a] { return run_predict(*a); };
}

}  // namespace cifar::cli
