// Unit tests for src/data (no LibTorch): the binary format, every bad-data case, the stratified split,
// crop/flip against hand-computed answers, archive extraction and checksum-verified download.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/rng.h"
#include "data/augment.h"
#include "data/image_ops.h"
#include "data/transforms.h"
#include "data/cifar.h"
#include "data/fetch.h"
#include "data/split.h"
#include "support/synth.h"
#include "support/testutil.h"

using namespace cifar;
using synth::error_of;
using synth::temp_dir;
namespace stdfs = std::filesystem;

namespace {
std::vector<uint8_t> record(int coarse, int fine, uint8_t fill = 7) {
  std::vector<uint8_t> r(data::kRecordBytes, fill);
  r[0] = static_cast<uint8_t>(coarse);
  r[1] = static_cast<uint8_t>(fine);
  return r;
}
const std::vector<std::string> kFiles = {"train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"};
}  // namespace

TEST(Format, ParsesRecordsPlanarAsInTheFile) {
  std::vector<uint8_t> bytes;
  for (int r = 0; r < 3; ++r) {
    auto rec = record(r, 5 * r + 1);
    for (int k = 0; k < data::kPixels; ++k) rec[2 + k] = static_cast<uint8_t>((k * 7 + r) % 256);
    bytes.insert(bytes.end(), rec.begin(), rec.end());
  }
  data::Split s = data::parse_split(bytes, "mem");
  ASSERT_EQ(s.size(), 3);
  EXPECT_EQ(s.fine[2], 11);
  EXPECT_EQ(s.coarse[2], 2);
  // Red plane first, row by row: pixel (c=1, y=2, x=3) of record 1 is byte 2 + 1024 + 2*32 + 3.
  const int k = 1024 + 2 * 32 + 3;
  EXPECT_EQ(s.image(1)[k], static_cast<uint8_t>((k * 7 + 1) % 256));
}

TEST(Format, WriteThenReadRoundTrips) {
  const std::string dir = temp_dir("roundtrip");
  synth::write_dataset_dir(dir, 300, 100, 10, 3);
  data::Dataset d = data::read_dataset(dir);
  EXPECT_EQ(d.train.size(), 300);
  EXPECT_EQ(d.test.size(), 100);
  EXPECT_EQ(d.fine_names.size(), 100u);
  EXPECT_EQ(d.coarse_names[19], "super_19");
  data::Split again = synth::make_split(300, 10, 3);
  EXPECT_EQ(d.train.pixels, again.pixels);
  EXPECT_EQ(d.train.fine, again.fine);
}

TEST(BadData, WrongFileSizeNamesTheFileAndRecord) {
  std::vector<uint8_t> bytes = record(1, 5);
  bytes.resize(bytes.size() + 100);
  auto msg = error_of([&] { data::parse_split(bytes, "/x/train.bin"); });
  EXPECT_NE(msg.find("/x/train.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3174 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("record 1 is truncated after 100 bytes"), std::string::npos) << msg;
}

TEST(BadData, TruncatedFileOnDisk) {
  const std::string dir = temp_dir("trunc");
  synth::write_dataset_dir(dir, 50, 20, 10, 1);
  stdfs::resize_file(dir + "/train.bin", 50 * data::kRecordBytes - 1000);
  auto msg = error_of([&] { data::read_dataset(dir); });
  EXPECT_NE(msg.find(dir + "/train.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("record 49 is truncated"), std::string::npos) << msg;
}

TEST(BadData, EmptyFile) {
  auto msg = error_of([&] { data::parse_split({}, "/x/test.bin"); });
  EXPECT_NE(msg.find("/x/test.bin' is empty"), std::string::npos) << msg;
}

TEST(BadData, LabelsOutOfRange) {
  std::vector<uint8_t> bytes = record(1, 5);
  auto bad = record(3, 100);
  bytes.insert(bytes.end(), bad.begin(), bad.end());
  auto msg = error_of([&] { data::parse_split(bytes, "f.bin"); });
  EXPECT_NE(msg.find("record 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fine label 100 is out of range 0..99"), std::string::npos) << msg;
  bytes = record(20, 5);
  msg = error_of([&] { data::parse_split(bytes, "f.bin"); });
  EXPECT_NE(msg.find("record 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("coarse label 20 is out of range 0..19"), std::string::npos) << msg;
}

TEST(BadData, InconsistentCoarseLabel) {
  std::vector<uint8_t> bytes = record(1, 5);
  auto other = record(2, 5);
  bytes.insert(bytes.end(), other.begin(), other.end());
  auto msg = error_of([&] { data::parse_split(bytes, "f.bin"); });
  EXPECT_NE(msg.find("record 1: fine label 5 has coarse label 2, but record 0 gave it coarse label 1"),
            std::string::npos)
      << msg;
}

TEST(BadData, MissingFilesSayHowToGetThem) {
  const std::string dir = temp_dir("missing");
  synth::write_dataset_dir(dir, 50, 20, 10, 1);
  stdfs::remove(dir + "/test.bin");
  auto msg = error_of([&] { data::read_dataset(dir); });
  EXPECT_NE(msg.find(dir + "/test.bin' is missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cifar100 data download"), std::string::npos) << msg;
  msg = error_of([&] { data::read_dataset(dir + "/nope"); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  synth::write_dataset_dir(dir, 50, 20, 10, 1);
  std::ofstream(dir + "/coarse_label_names.txt") << "a\nb\n";
  msg = error_of([&] { data::read_dataset(dir); });
  EXPECT_NE(msg.find("has 2 label names, expected 20"), std::string::npos) << msg;
}

TEST(Split, StratifiedExactSizesDisjointAndSeeded) {
  data::Split s = synth::make_split(5000, 100, 1);  // 50 per class
  auto sp = data::stratified_split(s.fine, 1000, 42);
  EXPECT_EQ(sp.val.size(), 1000u);
  EXPECT_EQ(sp.train.size(), 4000u);
  std::vector<int> per_class(100);
  for (auto i : sp.val) ++per_class[s.fine[static_cast<size_t>(i)]];
  for (int c : per_class) EXPECT_EQ(c, 10);
  std::set<int64_t> all(sp.train.begin(), sp.train.end());
  for (auto i : sp.val) EXPECT_FALSE(all.count(i));
  all.insert(sp.val.begin(), sp.val.end());
  EXPECT_EQ(all.size(), 5000u);
  EXPECT_TRUE(std::is_sorted(sp.train.begin(), sp.train.end()));
  EXPECT_EQ(data::stratified_split(s.fine, 1000, 42).val, sp.val);
  EXPECT_NE(data::stratified_split(s.fine, 1000, 43).val, sp.val);
}

TEST(Split, UnevenQuotasUseLargestRemainders) {
  // Classes of sizes 6, 3, 1 (10 images); val 5 -> exact quotas 3, 1.5, 0.5 -> 3, then the 0.5 ties go
  // to the lower class: 3, 2, 0.
  std::vector<uint8_t> labels = {0, 0, 0, 0, 0, 0, 1, 1, 1, 2};
  auto sp = data::stratified_split(labels, 5, 1, 3);
  std::vector<int> per(3);
  for (auto i : sp.val) ++per[labels[static_cast<size_t>(i)]];
  EXPECT_EQ(per, (std::vector<int>{3, 2, 0}));
}

TEST(Split, TooLargeValidationAndTrainLimit) {
  std::vector<uint8_t> labels(100, 0);
  auto msg = error_of([&] { data::stratified_split(labels, 100, 1, 1); });
  EXPECT_NE(msg.find("val_size = 100 leaves no images to train on"), std::string::npos) << msg;
  auto sp = data::stratified_split(labels, 10, 1, 1);
  auto first = sp.train;
  data::limit_train(sp, 25);
  ASSERT_EQ(sp.train.size(), 25u);
  EXPECT_TRUE(std::equal(sp.train.begin(), sp.train.end(), first.begin()));
  data::limit_train(sp, 0);
  EXPECT_EQ(sp.train.size(), 25u);
}

// Hand-computed crop and flip: a 32x32 image whose pixel value encodes its position.
TEST(Augment, CropWithZeroPaddingAndFlipMatchHandComputedPixels) {
  data::ops::Image src, dst;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) src.p[c][y][x] = static_cast<uint8_t>(1 + (y * 32 + x + c) % 250);
  using data::ops::PadMode;
  // Offsets (top=0, left=8) with pad 4: output (y, x) = input (y - 4, x + 4), zero outside.
  data::ops::pad_crop(src, dst, 4, PadMode::Constant, 0, 0, 8);
  EXPECT_EQ(dst.p[0][0][0], 0);               // row 0 comes from padding
  EXPECT_EQ(dst.p[0][4][0], src.p[0][0][4]);   // (4, 0) <- (0, 4)
  EXPECT_EQ(dst.p[0][10][27], src.p[0][6][31]);
  EXPECT_EQ(dst.p[0][10][28], 0);              // column 32 is padding
  EXPECT_EQ(dst.p[1][5][3], src.p[1][1][7]);
  // Reflect padding mirrors without repeating the edge: padded column -2 is column 2.
  data::ops::pad_crop(src, dst, 4, PadMode::Reflect, 0, 4, 2);
  EXPECT_EQ(dst.p[2][7][0], src.p[2][7][2]);
  EXPECT_EQ(dst.p[2][7][2], src.p[2][7][0]);
  // Crop then flip: output (y, x) = cropped (y, 31 - x).
  data::ops::pad_crop(src, dst, 4, PadMode::Constant, 0, 2, 0);
  data::ops::hflip(dst);
  EXPECT_EQ(dst.p[0][5][10], src.p[0][3][17]);
  EXPECT_EQ(dst.p[0][5][0], src.p[0][3][27]);
  EXPECT_EQ(dst.p[0][5][31], 0);
}

TEST(Augment, NormalisedOutputInBothLayouts) {
  data::ops::Image img;
  for (int k = 0; k < data::kPixels; ++k) (&img.p[0][0][0])[k] = static_cast<uint8_t>(k % 256);
  std::vector<float> chw(data::kPixels), hwc(data::kPixels);
  data::normalize(img, chw.data(), false);
  data::normalize(img, hwc.data(), true);
  for (int c = 0; c < 3; ++c)
    for (int p = 0; p < 1024; p += 37) {
      const float want = (static_cast<float>((&img.p[c][0][0])[p]) / 255.0f - data::kMean[c]) / data::kStd[c];
      EXPECT_FLOAT_EQ(chw[c * 1024 + p], want);
      EXPECT_FLOAT_EQ(hwc[p * 3 + c], want);
    }
}

TEST(Pipeline, PresetsExpandAndTheCanonicalFormRoundTrips) {
  auto p = data::Pipeline::parse("trivialaugment; random_erasing(p=0.25, value=random)");
  std::vector<std::string> names;
  for (const auto& t : p.transforms()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"random_crop", "hflip", "trivial_augment_wide", "cutout", "random_erasing"}));
  EXPECT_EQ(p.transforms()[3].num.at("size"), 16);
  EXPECT_EQ(p.transforms()[4].p, 0.25);
  EXPECT_EQ(p.transforms()[4].str.at("value"), "random");
  auto again = data::Pipeline::parse(p.to_string());
  EXPECT_EQ(again.to_string(), p.to_string());
  EXPECT_TRUE(data::Pipeline::parse("none").empty());
  EXPECT_EQ(data::Pipeline::parse("seed").transforms().size(), 5u);
}

TEST(Pipeline, BadSpecsNameTheKeyTransformAndParameter) {
  auto msg = error_of([] { data::Pipeline::parse("random_crop; hflop"); });
  EXPECT_NE(msg.find("config key 'augment': unknown transform 'hflop'"), std::string::npos) << msg;
  msg = error_of([] { data::Pipeline::parse("rotate(angle=10)"); });
  EXPECT_NE(msg.find("transform 'rotate' has no parameter 'angle' (parameters: p, degrees, fill, interpolation)"),
            std::string::npos)
      << msg;
  msg = error_of([] { data::Pipeline::parse("cutout(size=40)"); });
  EXPECT_NE(msg.find("parameter 'size' = 40 must be an integer in [1, 32]"), std::string::npos) << msg;
  msg = error_of([] { data::Pipeline::parse("hflip(p=1.5)"); });
  EXPECT_NE(msg.find("p = '1.5' must be a probability"), std::string::npos) << msg;
  msg = error_of([] { data::Pipeline::parse("random_crop(padding_mode=wrap)"); });
  EXPECT_NE(msg.find("must be one of constant, reflect, edge, symmetric"), std::string::npos) << msg;
  msg = error_of([] { data::Pipeline::parse("random_erasing; hflip"); });
  EXPECT_NE(msg.find("must come last"), std::string::npos) << msg;
  msg = error_of([] { data::Pipeline::parse("rand_augment(m=31)"); });
  EXPECT_NE(msg.find("m = 31 must be below bins = 31"), std::string::npos) << msg;
  msg = error_of([] { data::Pipeline::parse("rotate(degrees=10"); });
  EXPECT_NE(msg.find("unbalanced parentheses"), std::string::npos) << msg;
  EXPECT_THROW(data::Pipeline::parse("standard(p=1)"), ConfigError);
}

TEST(Pipeline, DrawsAreKeyedAndProbabilitiesRespected) {
  data::Split s = synth::make_split(4, 4, 3);
  data::ops::Image base;
  std::memcpy(&base, s.image(1), sizeof base);
  auto run = [&](const std::string& spec, uint64_t key) {
    data::ops::Image img = base;
    Rng rng(key);
    data::Pipeline::parse(spec).apply(img, rng);
    return std::vector<uint8_t>(&img.p[0][0][0], &img.p[0][0][0] + data::kPixels);
  };
  const std::vector<uint8_t> original(&base.p[0][0][0], &base.p[0][0][0] + data::kPixels);
  EXPECT_EQ(run("autoaugment", 5), run("autoaugment", 5));  // same key, same output
  int differ = 0;
  for (uint64_t k = 0; k < 20; ++k) differ += run("trivialaugment", k) != run("trivialaugment", k + 100);
  EXPECT_GT(differ, 15);
  for (uint64_t k = 0; k < 20; ++k) {  // p = 0 never applies; hflip(p=1) always flips
    EXPECT_EQ(run("rotate(degrees=90, p=0); color_jitter(brightness=0.9, p=0)", k), original);
    auto flipped = run("hflip(p=1)", k);
    EXPECT_EQ(flipped[5], original[31 - 5]);
  }
  // The crop offsets of random_crop(padding=4) cover 0..8 uniformly: count how often the image is unshifted.
  int unshifted = 0;
  for (uint64_t k = 0; k < 8100; ++k) unshifted += run("random_crop(padding=4, padding_mode=reflect)", k) == original;
  EXPECT_NEAR(unshifted, 100, 40);  // 8100 / 81
}

TEST(Fetch, ExtractsALocalArchiveAtomically) {
  const std::string dir = temp_dir("extract");
  synth::write_dataset_dir(dir + "/src", 100, 50, 10, 1);
  synth::write_tar_gz(dir + "/a.tar.gz", dir + "/src", "cifar-100-binary", kFiles);
  data::extract_archive(dir + "/a.tar.gz", dir + "/out", false);
  EXPECT_TRUE(data::dataset_present(dir + "/out"));
  EXPECT_EQ(fs::read_bytes(dir + "/out/train.bin"), fs::read_bytes(dir + "/src/train.bin"));
  for (auto& e : stdfs::directory_iterator(dir))  // no temporary directories left behind
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
}

TEST(Fetch, BadArchivesLeaveNothingBehind) {
  const std::string dir = temp_dir("badarchive");
  synth::write_dataset_dir(dir + "/src", 100, 50, 10, 1);
  // Missing a member.
  synth::write_tar_gz(dir + "/partial.tar.gz", dir + "/src", "cifar-100-binary", {"train.bin", "test.bin"});
  auto msg = error_of([&] { data::extract_archive(dir + "/partial.tar.gz", dir + "/out", false); });
  EXPECT_NE(msg.find("has no coarse_label_names.txt, fine_label_names.txt"), std::string::npos) << msg;
  // Truncated gzip stream.
  synth::write_tar_gz(dir + "/full.tar.gz", dir + "/src", "cifar-100-binary", kFiles);
  stdfs::copy_file(dir + "/full.tar.gz", dir + "/cut.tar.gz");
  stdfs::resize_file(dir + "/cut.tar.gz", stdfs::file_size(dir + "/full.tar.gz") / 2);
  msg = error_of([&] { data::extract_archive(dir + "/cut.tar.gz", dir + "/out", false); });
  EXPECT_NE(msg.find("cut.tar.gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupt or truncated"), std::string::npos) << msg;
  // A bad record inside an otherwise well-formed archive.
  std::ofstream(dir + "/src/test.bin", std::ios::binary | std::ios::app) << "xyz";
  synth::write_tar_gz(dir + "/badrec.tar.gz", dir + "/src", "cifar-100-binary", kFiles);
  msg = error_of([&] { data::extract_archive(dir + "/badrec.tar.gz", dir + "/out", false); });
  EXPECT_NE(msg.find("bad data set"), std::string::npos) << msg;
  EXPECT_NE(msg.find("test.bin"), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(dir + "/out"));
  for (auto& e : stdfs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
}

TEST(Fetch, NeverReplacesADirectoryHoldingOtherFiles) {
  const std::string dir = temp_dir("noreplace");
  synth::write_dataset_dir(dir + "/src", 100, 50, 10, 1);
  synth::write_tar_gz(dir + "/a.tar.gz", dir + "/src", "cifar-100-binary", kFiles);
  stdfs::create_directories(dir + "/precious");
  std::ofstream(dir + "/precious/thesis.tex") << "do not lose";
  auto msg = error_of([&] { data::extract_archive(dir + "/a.tar.gz", dir + "/precious", false); });
  EXPECT_NE(msg.find("holds other files"), std::string::npos) << msg;
  EXPECT_EQ(fs::read_text(dir + "/precious/thesis.tex"), "do not lose");
  // An incomplete data set directory (only our files) is replaced.
  stdfs::create_directories(dir + "/partial");
  stdfs::copy_file(dir + "/src/train.bin", dir + "/partial/train.bin");
  data::extract_archive(dir + "/a.tar.gz", dir + "/partial", false);
  EXPECT_TRUE(data::dataset_present(dir + "/partial"));
}

TEST(Fetch, DownloadVerifiesSizeAndChecksum) {
  const std::string dir = temp_dir("download");
  synth::write_dataset_dir(dir + "/src", 100, 50, 10, 1);
  const std::string archive = dir + "/served.tar.gz";
  synth::write_tar_gz(archive, dir + "/src", "cifar-100-binary", kFiles);
  const auto size = static_cast<int64_t>(stdfs::file_size(archive));
  const std::string md5 = hash::md5_file(archive);
  const std::string url = "file://" + archive;

  auto msg = error_of([&] { data::download(url, dir + "/got.tar.gz", size, "00000000000000000000000000000000"); });
  EXPECT_NE(msg.find("has MD5 " + md5 + ", expected 00000000000000000000000000000000"), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(dir + "/got.tar.gz"));
  EXPECT_FALSE(stdfs::exists(dir + "/got.tar.gz.part"));
  msg = error_of([&] { data::download(url, dir + "/got.tar.gz", size + 1, md5); });
  EXPECT_NE(msg.find("expected " + std::to_string(size + 1)), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(dir + "/got.tar.gz"));
  msg = error_of([&] { data::download("file://" + dir + "/nothing-here", dir + "/got.tar.gz", size, md5); });
  EXPECT_NE(msg.find("cannot download"), std::string::npos) << msg;

  data::download(url, dir + "/got.tar.gz", size, md5);
  EXPECT_EQ(hash::md5_file(dir + "/got.tar.gz"), md5);

  // The whole path: ensure_dataset downloads, verifies, extracts and removes the archive.
  data::FetchOptions o;
  o.data_dir = dir + "/cache/cifar-100-binary";
  o.url = url;
  o.download_md5 = md5;
  o.download_bytes = size;
  EXPECT_EQ(data::ensure_dataset(o), o.data_dir);
  EXPECT_TRUE(data::dataset_present(o.data_dir));
  EXPECT_FALSE(stdfs::exists(dir + "/cache/cifar-100-binary.tar.gz"));
}

TEST(Fetch, ExtractionReadsOnlyGzipTarWithMembersWithinTheOfficialSizes) {
  const std::string dir = temp_dir("extract-limits");
  synth::write_dataset_dir(dir + "/src", 100, 50, 10, 1);
  for (const char* c : {"bzip2", "xz"}) {
    const std::string path = dir + "/a." + c;
    synth::write_tar_gz(path, dir + "/src", "cifar-100-binary", kFiles, c);
    auto msg = error_of([&] { data::extract_archive(path, dir + "/out", false); });
    EXPECT_NE(msg.find("gzip-compressed tar"), std::string::npos) << c << ": " << msg;
    EXPECT_FALSE(stdfs::exists(dir + "/out"));
  }
  // A label-name list of 100 kB: larger than any real one (the cap holds whatever the header says).
  std::ofstream(dir + "/src/fine_label_names.txt", std::ios::app) << std::string(100 << 10, 'x');
  synth::write_tar_gz(dir + "/big.tar.gz", dir + "/src", "cifar-100-binary", kFiles);
  auto msg = error_of([&] { data::extract_archive(dir + "/big.tar.gz", dir + "/out", false); });
  EXPECT_NE(msg.find("larger than the official 65536 bytes"), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(dir + "/out"));
  for (auto& e : stdfs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
}

TEST(Fetch, DownloadsAreHttpsOrFileBoundedInSizeAndPinnedBySha256) {
  const std::string dir = temp_dir("download-limits");
  synth::write_dataset_dir(dir + "/src", 100, 50, 10, 1);
  const std::string archive = dir + "/served.tar.gz";
  synth::write_tar_gz(archive, dir + "/src", "cifar-100-binary", kFiles);
  const auto size = static_cast<int64_t>(stdfs::file_size(archive));
  const std::string md5 = hash::md5_file(archive), sha = hash::sha256_file(archive);
  const std::string url = "file://" + archive;
  for (const std::string& bad : std::vector<std::string>{"http://127.0.0.1:9/a.tar.gz", "ftp://127.0.0.1/a.tar.gz", "scp://h/a", archive}) {
    auto msg = error_of([&] { data::download(bad, dir + "/got.tar.gz", size, md5); });
    EXPECT_NE(msg.find("only https:// and file:// addresses are accepted"), std::string::npos) << bad << ": " << msg;
  }
  // Never more than the expected size is received.
  auto msg = error_of([&] { data::download(url, dir + "/got.tar.gz", size - 100, md5); });
  EXPECT_NE(msg.find("larger than " + std::to_string(size - 100) + " bytes"), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(dir + "/got.tar.gz.part"));
  msg = error_of([&] { data::download(url, dir + "/got.tar.gz", size, md5, std::string(64, '0')); });
  EXPECT_NE(msg.find("has SHA-256 " + sha + ", expected " + std::string(64, '0')), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(dir + "/got.tar.gz"));
  data::download(url, dir + "/got.tar.gz", size, md5, sha);
  EXPECT_EQ(hash::sha256_file(dir + "/got.tar.gz"), sha);
  // A local archive pinned by SHA-256.
  data::FetchOptions o;
  o.data_dir = dir + "/out";
  o.archive = archive;
  o.archive_sha256 = std::string(64, 'a');
  msg = error_of([&] { data::ensure_dataset(o); });
  EXPECT_NE(msg.find("but archive_sha256 expects " + std::string(64, 'a')), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(o.data_dir));
  o.archive_sha256 = sha;
  data::ensure_dataset(o);
  EXPECT_TRUE(data::dataset_present(o.data_dir));
}

TEST(Fetch, LocalArchiveChecksumIsEnforcedWhenGiven) {
  const std::string dir = temp_dir("localmd5");
  synth::write_dataset_dir(dir + "/src", 100, 50, 10, 1);
  synth::write_tar_gz(dir + "/a.tar.gz", dir + "/src", "cifar-100-binary", kFiles);
  data::FetchOptions o;
  o.data_dir = dir + "/out";
  o.archive = dir + "/a.tar.gz";
  o.archive_md5 = "0123456789abcdef0123456789abcdef";
  auto msg = error_of([&] { data::ensure_dataset(o); });
  EXPECT_NE(msg.find("but archive_md5 expects 0123456789abcdef0123456789abcdef"), std::string::npos) << msg;
  EXPECT_FALSE(stdfs::exists(o.data_dir));
  o.archive_md5 = hash::md5_file(o.archive);
  data::ensure_dataset(o);
  EXPECT_TRUE(data::dataset_present(o.data_dir));
}
