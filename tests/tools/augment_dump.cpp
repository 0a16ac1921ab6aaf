// Test tool for tests/parity/test_transforms.py: applies image operations with explicit parameters to
// given images, so their outputs can be compared with torchvision's functional API on the same inputs.
//   augment_dump CASES.json INPUT.raw OUTPUT.raw   (images: 3x32x32 uint8, CHW, back to back)
//   augment_dump --magnitudes SPACE BINS           (prints the policy's magnitude table as JSON)
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fsutil.h"
#include "data/image_ops.h"
#include "data/transforms.h"

using namespace cifar::data;
using nlohmann::json;

int main(int argc, char** argv) {
  try {
    if (argc == 4 && std::string(argv[1]) == "--magnitudes") {
      json out = json::array();
      for (const auto& m : augmentation_space(argv[2], std::atoi(argv[3])))
        out.push_back({{"op", m.op}, {"values", m.values}, {"signed", m.is_signed}});
      std::cout << out.dump() << "\n";
      return 0;
    }
    if (argc == 2 && std::string(argv[1]) == "--policy") {
      json out = json::array();
      for (const auto& sub : auto_augment_cifar10_policy()) {
        json pair = json::array();
        for (const auto& st : sub) pair.push_back({st.op, st.p, st.bin});
        out.push_back(pair);
      }
      std::cout << out.dump() << "\n";
      return 0;
    }
    if (argc != 4) {
      std::fprintf(stderr, "usage: augment_dump CASES.json INPUT.raw OUTPUT.raw | --magnitudes SPACE BINS\n");
      return 2;
    }
    const json cases = json::parse(cifar::fs::read_text(argv[1]));
    const std::vector<uint8_t> raw = cifar::fs::read_bytes(argv[2]);
    std::vector<ops::Image> in(raw.size() / sizeof(ops::Image));
    std::memcpy(in.data(), raw.data(), in.size() * sizeof(ops::Image));
    std::vector<ops::Image> out;
    for (const auto& c : cases) {
      const std::string op = c.at("op");
      ops::Image img = in.at(c.at("image").get<size_t>()), dst;
      const auto interp = c.value("interp", "bilinear") == "nearest" ? ops::Interp::Nearest : ops::Interp::Bilinear;
      const auto fill = static_cast<uint8_t>(c.value("fill", 0));
      if (op == "pad_crop") {
        const std::string m = c.at("mode");
        const auto mode = m == "reflect" ? ops::PadMode::Reflect
                          : m == "edge" ? ops::PadMode::Edge
                          : m == "symmetric" ? ops::PadMode::Symmetric
                                             : ops::PadMode::Constant;
        ops::pad_crop(img, dst, c.at("pad"), mode, fill, c.at("top"), c.at("left"));
        img = dst;
      } else if (op == "hflip") {
        ops::hflip(img);
      } else if (op == "erase") {
        ops::erase(img, c.at("top"), c.at("left"), c.at("h"), c.at("w"), fill);
      } else if (op == "rotate") {
        ops::rotate(img, dst, c.at("angle"), interp, fill);
        img = dst;
      } else if (op == "affine") {
        ops::affine(img, dst, c.at("angle"), c.at("tx"), c.at("ty"), c.at("scale"), c.at("shear_x"), c.at("shear_y"),
                    interp, fill);
        img = dst;
      } else if (op == "shear_x") {
        ops::shear_x(img, dst, c.at("degrees"), interp, fill);
        img = dst;
      } else if (op == "shear_y") {
        ops::shear_y(img, dst, c.at("degrees"), interp, fill);
        img = dst;
      } else if (op == "brightness") {
        ops::adjust_brightness(img, c.at("factor"));
      } else if (op == "contrast") {
        ops::adjust_contrast(img, c.at("factor"));
      } else if (op == "saturation") {
        ops::adjust_saturation(img, c.at("factor"));
      } else if (op == "hue") {
        ops::adjust_hue(img, c.at("factor"));
      } else if (op == "sharpness") {
        ops::adjust_sharpness(img, c.at("factor"));
      } else if (op == "posterize") {
        ops::posterize(img, c.at("bits"));
      } else if (op == "solarize") {
        ops::solarize(img, c.at("threshold"));
      } else if (op == "autocontrast") {
        ops::autocontrast(img);
      } else if (op == "equalize") {
        ops::equalize(img);
      } else if (op == "invert") {
        ops::invert(img);
      } else {
        std::fprintf(stderr, "augment_dump: unknown op %s\n", op.c_str());
        return 2;
      }
      out.push_back(img);
    }
    cifar::fs::write_atomic(argv[3], out.data(), out.size() * sizeof(ops::Image));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "augment_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}
