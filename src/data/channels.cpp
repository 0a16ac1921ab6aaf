#include "data/channels.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "data/cifar.h"
#include "data/classes.h"
#include "data/fetch.h"

namespace cifar::data {

namespace {
namespace stdfs = std::filesystem;

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Files of interest below a channel directory (bounded: a channel is small for our purposes, and a
// recursive scan of an unexpected huge channel must not run forever).
struct ChannelFiles {
  std::vector<std::string> train_bin, test_bin, fine_names, coarse_names, archives;
  std::vector<std::string> sample;  // a few other file names, for messages
  int64_t files = 0;
};

ChannelFiles scan_channel(const std::string& dir) {
  ChannelFiles f;
  std::error_code ec;
  stdfs::recursive_directory_iterator it(dir, stdfs::directory_options::follow_directory_symlink, ec), end;
  if (ec) fail("cannot read channel directory '{}': {}", dir, ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) fail("cannot read channel directory '{}': {}", dir, ec.message());
    if (it.depth() > 6) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    if (++f.files > 100000) break;
    const std::string p = it->path().string(), name = it->path().filename().string();
    if (name == "train.bin") f.train_bin.push_back(p);
    else if (name == "test.bin") f.test_bin.push_back(p);
    else if (name == "fine_label_names.txt") f.fine_names.push_back(p);
    else if (name == "coarse_label_names.txt") f.coarse_names.push_back(p);
    else if (ends_with(name, ".tar.gz") || ends_with(name, ".tgz"))
      f.archives.push_back(p);
    else if (f.sample.size() < 3) f.sample.push_back(stdfs::relative(it->path(), dir).string());
  }
  for (auto* v : {&f.train_bin, &f.test_bin, &f.fine_names, &f.coarse_names, &f.archives}) std::sort(v->begin(), v->end());
  return f;
}

std::string holds(const ChannelFiles& f) {
  std::vector<std::string> parts;
  auto add = [&](const std::vector<std::string>& v, const char* what) {
    if (!v.empty()) parts.push_back(fmt::format("{} {}", v.size(), what));
  };
  add(f.train_bin, "train.bin");
  add(f.test_bin, "test.bin");
  add(f.archives, "*.tar.gz");
  add(f.fine_names, "fine_label_names.txt");
  add(f.coarse_names, "coarse_label_names.txt");
  if (parts.empty()) return f.files == 0 ? "nothing" : fmt::format("{} other files (e.g. {})", f.files, join(f.sample));
  return join(parts);
}

const std::string& only_one(const std::vector<std::string>& v, const std::string& channel, const char* what) {
  if (v.size() > 1)
    fail("channel '{}' holds {} files named {} ({}): keep exactly one", channel, v.size(), what, join(v));
  return v.front();
}

// The label file next to `bin` when there is one, else the first in any channel, else "".
std::string label_file(const std::string& bin, const std::vector<const std::vector<std::string>*>& found,
                       const char* name) {
  const std::string beside = (stdfs::path(bin).parent_path() / name).string();
  if (fs::exists(beside)) return beside;
  for (const auto* v : found)
    if (!v->empty()) return v->front();
  return "";
}

void link(const std::string& target, const std::string& link_path) {
  std::error_code ec;
  stdfs::create_symlink(stdfs::absolute(target), link_path, ec);
  if (ec) fail("cannot link '{}' to '{}': {}", link_path, target, ec.message());
}

void write_names(const std::string& path, const char* const* names, size_t n) {
  std::string text;
  for (size_t i = 0; i < n; ++i) text += std::string(names[i]) + "\n";
  fs::write_atomic(path, text);
}
}  // namespace

std::vector<Setting> channel_settings(const std::vector<InputChannel>& channels, const std::string& scratch_dir) {
  if (channels.empty()) return {};
  std::map<std::string, ChannelFiles> files;
  for (const auto& c : channels) {
    if (c.input_mode == "Pipe")
      fail("channel '{}' uses Pipe input mode, which cifar100 does not read: set its TrainingInputMode (InputMode) to "
           "File or FastFile",
           c.name);
    if (c.input_mode != "File" && c.input_mode != "FastFile")
      fail("channel '{}' has TrainingInputMode '{}': expected File or FastFile", c.name, c.input_mode);
    if (!stdfs::is_directory(c.dir))
      fail("channel '{}' is declared (inputdataconfig.json or {}) but its directory '{}' does not exist", c.name,
           c.env_name.empty() ? "the environment" : c.env_name, c.dir);
    files[c.name] = scan_channel(c.dir);
  }
  auto describe_all = [&] {
    std::vector<std::string> v;
    for (const auto& c : channels) v.push_back(fmt::format("'{}' holds {}", c.name, holds(files[c.name])));
    return join(v, "; ");
  };
  const std::string expected =
      "expected a 'train' channel with train.bin and a 'test' channel with test.bin (the official binary layout), or "
      "one channel with cifar-100-binary.tar.gz, or one channel with the extracted data set";
  const bool has_train = files.count("train"), has_test = files.count("test");

  // train + test channels in the binary layout.
  if (has_train && has_test && !files["train"].train_bin.empty() && !files["test"].test_bin.empty()) {
    const ChannelFiles &tr = files["train"], &te = files["test"];
    const std::string train = only_one(tr.train_bin, "train", "train.bin");
    const std::string test = only_one(te.test_bin, "test", "test.bin");
    const std::string dir = (stdfs::path(scratch_dir) / "channels").string();
    std::error_code ec;
    stdfs::remove_all(dir, ec);
    fs::make_dirs(dir);
    const DataFiles out = data_files(dir);
    link(train, out.train);
    link(test, out.test);
    const std::string fine = label_file(train, {&tr.fine_names, &te.fine_names}, "fine_label_names.txt");
    const std::string coarse = label_file(train, {&tr.coarse_names, &te.coarse_names}, "coarse_label_names.txt");
    if (!fine.empty()) link(fine, out.fine_names);
    else write_names(out.fine_names, kFineNames.data(), kFineNames.size());
    if (!coarse.empty()) link(coarse, out.coarse_names);
    else write_names(out.coarse_names, kCoarseNames.data(), kCoarseNames.size());
    log::info("data from channels 'train' ({}) and 'test' ({}){}", train, test,
              fine.empty() || coarse.empty() ? "; official CIFAR-100 class names (no label-name files in the channels)"
                                             : "");
    return {{"data_dir", dir, "the 'train' and 'test' channels"}};
  }
  if (has_train != has_test)
    fail("channel '{}' is given without a '{}' channel ({}): {}", has_train ? "train" : "test", has_train ? "test" : "train",
         describe_all(), expected);

  // One archive, or one extracted data set, in any single channel.
  std::vector<std::pair<std::string, std::string>> archives, dirs;
  for (const auto& c : channels) {
    for (const auto& a : files[c.name].archives) archives.emplace_back(c.name, a);
    for (const auto& t : files[c.name].train_bin)
      if (dataset_present(stdfs::path(t).parent_path().string())) dirs.emplace_back(c.name, stdfs::path(t).parent_path().string());
  }
  if (archives.size() == 1 && dirs.empty()) {
    log::info("data from channel '{}': archive {}", archives[0].first, archives[0].second);
    return {{"archive", archives[0].second, fmt::format("channel '{}'", archives[0].first)}};
  }
  if (dirs.size() == 1 && archives.empty()) {
    log::info("data from channel '{}': extracted data set in {}", dirs[0].first, dirs[0].second);
    return {{"data_dir", dirs[0].second, fmt::format("channel '{}'", dirs[0].first)}};
  }
  if (archives.size() + dirs.size() > 1) {
    std::vector<std::string> all;
    for (const auto& [c, p] : archives) all.push_back(fmt::format("{} (channel '{}')", p, c));
    for (const auto& [c, p] : dirs) all.push_back(fmt::format("{} (channel '{}')", p, c));
    fail("the channels hold more than one data set ({}): give exactly one", join(all));
  }
  fail("no CIFAR-100 data in the input channels ({}): {}", describe_all(), expected);
}

}  // namespace cifar::data
