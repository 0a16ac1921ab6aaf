// Test tool: writes a small synthetic data set in the official CIFAR-100 binary layout, optionally
// packed as a tar.gz like the official archive.
//   make_fake_cifar DIR [--train N] [--test N] [--classes K] [--seed S] [--archive FILE]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "support/synth.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_fake_cifar DIR [--train N] [--test N] [--classes K] [--seed S] [--archive FILE]\n");
    return 2;
  }
  std::string dir = argv[1], archive;
  int64_t n_train = 2000, n_test = 500;
  int classes = 10;
  uint64_t seed = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--train") n_train = std::atoll(v.c_str());
    else if (k == "--test") n_test = std::atoll(v.c_str());
    else if (k == "--classes") classes = std::atoi(v.c_str());
    else if (k == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--archive") archive = v;
    else {
      std::fprintf(stderr, "make_fake_cifar: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    cifar::synth::write_dataset_dir(dir, n_train, n_test, classes, seed);
    if (!archive.empty())
      cifar::synth::write_tar_gz(archive, dir, "cifar-100-binary",
                                   {"train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_fake_cifar: %s\n", e.what());
    return 1;
  }
  return 0;
}
