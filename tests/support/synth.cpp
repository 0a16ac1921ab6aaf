#include "synth.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/rng.h"

namespace cifar::synth {

data::Split make_split(int64_t n, int classes, uint64_t seed) {
  data::Split s;
  s.path = "<synthetic>";
  s.pixels.resize(static_cast<size_t>(n) * data::kPixels);
  s.fine.resize(static_cast<size_t>(n));
  s.coarse.resize(static_cast<size_t>(n));
  Rng rng(seed, Stream::Test);
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % classes);
    s.fine[static_cast<size_t>(i)] = static_cast<uint8_t>(c);
    s.coarse[static_cast<size_t>(i)] = static_cast<uint8_t>(c / 5);
    // Class colour from a fixed palette, and horizontal stripes whose period depends on the class.
    const int base[3] = {40 + (c * 67) % 176, 40 + (c * 131) % 176, 40 + (c * 29) % 176};
    const int period = 2 + c % 7;
    uint8_t* img = s.pixels.data() + i * data::kPixels;
    for (int ch = 0; ch < 3; ++ch)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
          int v = base[ch] + ((y / period) % 2 ? 30 : -30) + static_cast<int>(rng.below(41)) - 20;
          img[ch * 1024 + y * 32 + x] = static_cast<uint8_t>(std::clamp(v, 0, 255));
        }
  }
  return s;
}

void write_dataset_dir(const std::string& dir, int64_t n_train, int64_t n_test, int classes, uint64_t seed) {
  fs::make_dirs(dir);
  const auto f = data::data_files(dir);
  data::write_split(f.train, make_split(n_train, classes, seed));
  data::write_split(f.test, make_split(n_test, classes, seed + 1));
  std::string fine, coarse;
  for (int c = 0; c < data::kNumClasses; ++c) fine += "class_" + std::to_string(c) + "\n";
  for (int c = 0; c < data::kNumCoarse; ++c) coarse += "super_" + std::to_string(c) + "\n";
  fs::write_atomic(f.fine_names, fine);
  fs::write_atomic(f.coarse_names, coarse);
}

void write_tar_gz(const std::string& archive_path, const std::string& dir, const std::string& prefix,
                  const std::vector<std::string>& files, const std::string& compression) {
  struct archive* a = archive_write_new();
  if (compression == "bzip2") archive_write_add_filter_bzip2(a);
  else if (compression == "xz") archive_write_add_filter_xz(a);
  else archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, archive_path.c_str()) != ARCHIVE_OK)
    fail("cannot create '{}': {}", archive_path, archive_error_string(a));
  for (const auto& name : files) {
    const std::vector<uint8_t> data = fs::read_bytes((std::filesystem::path(dir) / name).string());
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, (prefix.empty() ? name : prefix + "/" + name).c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

}  // namespace cifar::synth
