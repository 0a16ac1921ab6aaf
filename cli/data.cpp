// `cifar100 data download|verify|info|preview|upload`: get the data set, check it, describe it, show the
// augmentation, put it into a bucket.
#include <algorithm>
#include <array>
#include <filesystem>
#include <cmath>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cloud/storage.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/log.h"
#include "data/cifar.h"
#include "data/fetch.h"
#include "data/preview.h"
#include "data/split.h"

namespace cifar::cli {

namespace {
struct DataArgs {
  ConfigArgs cfg;
  bool force = false;
  std::string url;
  bool checksums = false;
  std::string json;
  std::string preview_out = "augment-preview.png";
  int count = 64, columns = 8, scale = 3;
  int64_t epoch = 0;
  std::string target;  // data upload
};

int run_download(const DataArgs& a) {
  Config cfg = resolve(a.cfg);
  if (!a.url.empty()) cfg.set("data_url", a.url, Source::CommandLine, "--url");
  const std::string dir = local_data_dir(cfg);
  if (data::dataset_present(dir) && !a.force) {
    log::info("data set already present in {} (use --force to fetch it again)", dir);
    return 0;
  }
  prepare_dataset(cfg, a.force);
  return 0;
}

struct SplitSummary {
  int64_t records = 0;
  std::array<int64_t, data::kNumClasses> per_class{};
  std::array<double, 3> mean{}, std{};
};

SplitSummary summarize(const data::Split& s) {
  SplitSummary r;
  r.records = s.size();
  for (uint8_t f : s.fine) ++r.per_class[f];
  const int64_t plane = data::kImageSize * data::kImageSize;
  for (int c = 0; c < 3; ++c) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < s.size(); ++i) {
      const uint8_t* p = s.image(i) + c * plane;
      for (int64_t k = 0; k < plane; ++k) {
        const double v = p[k] / 255.0;
        sum += v;
        sq += v * v;
      }
    }
    const double n = static_cast<double>(s.size() * plane);
    r.mean[static_cast<size_t>(c)] = n > 0 ? sum / n : 0;
    r.std[static_cast<size_t>(c)] = n > 0 ? std::sqrt(std::max(0.0, sq / n - r.mean[c] * r.mean[c])) : 0;
  }
  return r;
}

int run_verify(const DataArgs& a) {
  const Config cfg = resolve(a.cfg);
  const std::string dir = local_data_dir(cfg);
  const data::Dataset ds = data::read_dataset(dir);  // validates every record and label file
  int problems = 0;
  auto check = [&](const data::Split& s, int64_t expected, int64_t per_class) {
    if (s.size() != expected) {
      log::error("'{}' holds {} records; the official file holds {}", s.path, s.size(), expected);
      ++problems;
    }
    std::array<int64_t, data::kNumClasses> counts{};
    for (uint8_t f : s.fine) ++counts[f];
    for (int c = 0; c < data::kNumClasses; ++c)
      if (counts[static_cast<size_t>(c)] != per_class) {
        log::error("'{}': class {} ({}) has {} images; the official file has {} per class", s.path, c,
                   ds.fine_names[static_cast<size_t>(c)], counts[static_cast<size_t>(c)], per_class);
        ++problems;
        break;
      }
  };
  check(ds.train, data::kOfficialTrainRecords, 500);
  check(ds.test, data::kOfficialTestRecords, 100);
  if (a.checksums) {
    const auto f = data::data_files(dir);
    for (const auto& p : {f.train, f.test, f.fine_names, f.coarse_names})
      log::info("sha256 {}  {}", hash::sha256_file(p), p);
  }
  if (problems) {
    log::error("data set in {} is readable but is not the complete official CIFAR-100 ({} problem(s))", dir, problems);
    return 1;
  }
  log::info("data set in {} is valid: {} training and {} test records, 100 classes, labels in range", dir,
            ds.train.size(), ds.test.size());
  return 0;
}

int run_info(const DataArgs& a) {
  const Config cfg = resolve(a.cfg);
  const std::string dir = local_data_dir(cfg);
  const data::Dataset ds = data::read_dataset(dir);
  nlohmann::json j = {{"dir", dir}};
  for (const auto* s : {&ds.train, &ds.test}) {
    const SplitSummary r = summarize(*s);
    const auto [lo, hi] = std::minmax_element(r.per_class.begin(), r.per_class.end());
    const char* name = s == &ds.train ? "train" : "test";
    std::printf("%-5s %6lld images  %lld..%lld per class  mean %.4f %.4f %.4f  std %.4f %.4f %.4f  (%s)\n", name,
                static_cast<long long>(r.records), static_cast<long long>(*lo), static_cast<long long>(*hi), r.mean[0],
                r.mean[1], r.mean[2], r.std[0], r.std[1], r.std[2], s->path.c_str());
    j[name] = {{"images", r.records}, {"per_class_min", *lo}, {"per_class_max", *hi}, {"mean", r.mean}, {"std", r.std},
               {"path", s->path}};
  }
  std::printf("classes: %zu fine (", ds.fine_names.size());
  for (size_t i = 0; i < 5 && i < ds.fine_names.size(); ++i) std::printf("%s%s", i ? ", " : "", ds.fine_names[i].c_str());
  std::printf(", ...), %zu coarse\n", ds.coarse_names.size());
  j["fine_label_names"] = ds.fine_names;
  j["coarse_label_names"] = ds.coarse_names;
  if (!a.json.empty()) {
    cloud::Output out(a.json, /*directory=*/false);
    fs::write_atomic(out.path(), j.dump(2) + "\n");
    out.commit();
  }
  return 0;
}
int run_preview(const DataArgs& a) {
  const Config cfg = resolve(a.cfg);
  const data::Dataset ds = data::read_dataset(prepare_dataset(cfg));
  const auto seed = static_cast<uint64_t>(cfg.i("seed"));
  data::TrainValSplit split = data::stratified_split(ds.train.fine, cfg.i("val_size"), seed);
  data::limit_train(split, cfg.i("train_limit"));
  const auto n = std::min<size_t>(static_cast<size_t>(a.count), split.train.size());
  const std::vector<int64_t> indices(split.train.begin(), split.train.begin() + static_cast<std::ptrdiff_t>(n));
  const data::Pipeline pipeline = data::Pipeline::parse(cfg.s("augment"));
  data::PreviewOptions po;
  po.columns = a.columns;
  po.scale = a.scale;
  po.seed = seed;
  po.epoch = a.epoch;
  cloud::Output out(a.preview_out, /*directory=*/false);
  const auto [w, h] = data::write_preview(out.path(), ds.train, indices, ds.fine_names, pipeline, po);
  out.commit();
  log::info("wrote {} ({}x{} pixels): the first {} training images as epoch {} augments them", a.preview_out, w, h, n,
            a.epoch + 1);
  log::info("pipeline: {}", pipeline.to_string());
  return 0;
}
// The data set under `target` in the layout SageMaker's training channels take: target/train/ (train.bin and
// the label files) and target/test/ (test.bin and the label files). `data_dir=TARGET` reads it back too.
int run_upload(const DataArgs& a) {
  const Config cfg = resolve(a.cfg);
  const std::string dir = prepare_dataset(cfg);
  const data::Dataset ds = data::read_dataset(dir);  // only a valid data set is uploaded
  const data::DataFiles f = data::data_files(dir);
  cloud::Storage& st = cloud::storage_for(a.target);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"train/train.bin", f.train},         {"train/fine_label_names.txt", f.fine_names},
      {"train/coarse_label_names.txt", f.coarse_names}, {"test/test.bin", f.test},
      {"test/fine_label_names.txt", f.fine_names},      {"test/coarse_label_names.txt", f.coarse_names}};
  for (const auto& [rel, path] : files) {
    const std::string dest = cloud::join(a.target, rel);
    const cloud::Entry there = st.stat(dest);
    std::string etag = there.version;
    etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
    if (!a.force && !there.name.empty() && there.size == static_cast<int64_t>(std::filesystem::file_size(path)) &&
        etag == hash::md5_file(path)) {
      log::info("{} is already there (same MD5)", dest);
      continue;
    }
    cloud::publish_file(path, dest);
    log::info("uploaded {} ({:.1f} MB)", dest, static_cast<double>(std::filesystem::file_size(path)) / 1e6);
  }
  log::info("data set ({} training, {} test images) at {}: SageMaker channels 'train' = {} and 'test' = {}; "
            "data_dir={} reads it too",
            ds.train.size(), ds.test.size(), a.target, cloud::join(a.target, "train/"), cloud::join(a.target, "test/"),
            a.target);
  return 0;
}
}  // namespace

Runner add_data(CLI::App& root) {
  auto a = std::make_shared<DataArgs>();
  CLI::App* sub = root.add_subcommand("data", "download, verify, describe or upload the CIFAR-100 data set");
  sub->require_subcommand(1);
  CLI::App* dl = sub->add_subcommand("download", "fetch (or extract a local archive) into the data directory");
  add_config_args(dl, a->cfg, "", false);
  dl->add_flag("--force", a->force, "fetch and extract again even if the data set is present");
  dl->add_option("--url", a->url, "download address (default: the official archive; env CIFAR100_DATA_URL)");
  CLI::App* vf = sub->add_subcommand("verify", "check every record, label and count of the extracted data set");
  add_config_args(vf, a->cfg, "", false);
  vf->add_flag("--checksums", a->checksums, "also print the SHA-256 of each file");
  CLI::App* in = sub->add_subcommand("info", "print sizes, class counts and channel statistics");
  add_config_args(in, a->cfg, "", false);
  in->add_option("--json", a->json, "also write the summary to this JSON file");
  CLI::App* pv = sub->add_subcommand("preview", "write a PNG grid of augmented training images with their labels");
  add_config_args(pv, a->cfg, "YAML config whose augment pipeline, seed and split to show", false);
  pv->add_option("--out,-o", a->preview_out, "PNG file to write (default augment-preview.png)");
  pv->add_option("--count", a->count, "number of images (default 64)")->check(CLI::Range(1, 1024));
  pv->add_option("--columns", a->columns, "images per row (default 8)")->check(CLI::Range(1, 64));
  pv->add_option("--scale", a->scale, "pixels per image pixel (default 3)")->check(CLI::Range(1, 16));
  pv->add_option("--epoch", a->epoch, "0-based epoch whose augmentation draws to show (default 0)")
      ->check(CLI::NonNegativeNumber);
  CLI::App* up = sub->add_subcommand("upload", "put the data set into a directory or s3:// prefix, in the layout of "
                                               "SageMaker's train and test channels");
  add_config_args(up, a->cfg, "", false);
  up->add_option("target", a->target, "s3://bucket/prefix (or a directory)")->required();
  up->add_flag("--force", a->force, "upload files even when the same content is already there");
  return [a, dl, vf, in, pv, up]() -> int {
    if (up->parsed()) return run_upload(*a);
    if (pv->parsed()) return run_preview(*a);
    if (dl->parsed()) return run_download(*a);
    if (vf->parsed()) return run_verify(*a);
    if (in->parsed()) return run_info(*a);
    return 2;
  };
}

}  // namespace cifar::cli
