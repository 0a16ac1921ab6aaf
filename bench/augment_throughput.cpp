// Augmentation throughput on one core: images/s of our per-sample path (copy, pipeline, normalise to
// float) for several pipelines, on the real training images when CIFAR100_DATA_DIR holds them (else
// synthetic ones).   augment_throughput [SECONDS_PER_PIPELINE]
// Prints one line per pipeline: "<name> <images/s>" (bench/augment_throughput.sh adds torchvision's).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/rng.h"
#include "data/augment.h"
#include "data/cifar.h"
#include "data/fetch.h"
#include "data/transforms.h"

using namespace cifar;

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  data::Split split;
  const char* dir = std::getenv("CIFAR100_DATA_DIR");
  if (dir && data::dataset_present(dir)) split = data::read_split(data::data_files(dir).train);
  else {
    std::fprintf(stderr, "augment_throughput: CIFAR100_DATA_DIR not set or empty: using noise images\n");
    split.pixels.resize(50000 * data::kPixels);
    split.fine.resize(50000);
    Rng rng(1);
    for (auto& p : split.pixels) p = static_cast<uint8_t>(rng.below(256));
  }
  // The same pipelines as tools/reference/bench_augment.py: the policies run after crop+flip on both sides.
  std::vector<std::pair<std::string, std::string>> pipelines = {
      {"crop+flip", "standard"},
      {"seed", "seed"},
      {"trivialaugment", "random_crop(padding=4); hflip; trivial_augment_wide"},
      {"autoaugment", "random_crop(padding=4); hflip; auto_augment"},
      {"randaugment", "random_crop(padding=4); hflip; rand_augment(n=2, m=9)"}};
  if (const char* extra = std::getenv("AUGMENT_SPEC")) pipelines = {{"custom", extra}};
  std::vector<float> out(data::kPixels);
  for (const auto& [name, spec] : pipelines) {
    const data::Pipeline pl = data::Pipeline::parse(spec);
    int64_t n = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (elapsed < seconds) {
      for (int k = 0; k < 1000; ++k, ++n) {
        const int64_t idx = n % split.size();
        Rng rng(7, Stream::Augment, {0, static_cast<uint64_t>(n)});
        data::augment_normalize(split.image(idx), out.data(), true, &pl, rng);
      }
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    std::printf("%s %.0f\n", name.c_str(), static_cast<double>(n) / elapsed);
  }
  return 0;
}
