#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>

#include "common/error.h"

namespace cifar::data {

namespace {

// ------------------------------------------------------------------------------ parameter tables

struct NumParam {
  const char* name;
  double def, lo, hi;
  bool integer;
};
struct EnumParam {
  const char* name;
  std::vector<std::string> values;  // first = default
};
struct Spec {
  const char* name;
  bool is_float;  // works on the normalised float image
  double default_p;
  std::vector<NumParam> nums;
  std::vector<EnumParam> enums;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"random_crop", false, 1.0, {{"padding", 4, 0, 31, true}, {"fill", 0, 0, 255, true}},
       {{"padding_mode", {"constant", "reflect", "edge", "symmetric"}}}},
      {"hflip", false, 0.5, {}, {}},
      {"rotate", false, 1.0, {{"degrees", 15, 0, 360, false}, {"fill", 0, 0, 255, true}},
       {{"interpolation", {"bilinear", "nearest"}}}},
      {"affine", false, 1.0,
       {{"degrees", 0, 0, 360, false},
        {"translate", 0, 0, 1, false},
        {"scale_min", 1, 0.1, 10, false},
        {"scale_max", 1, 0.1, 10, false},
        {"shear", 0, 0, 89, false},
        {"fill", 0, 0, 255, true}},
       {{"interpolation", {"bilinear", "nearest"}}}},
      {"cutout", false, 1.0, {{"holes", 1, 1, 64, true}, {"size", 16, 1, 32, true}, {"fill", 0, 0, 255, true}}, {}},
      {"color_jitter", false, 1.0,
       {{"brightness", 0, 0, 10, false}, {"contrast", 0, 0, 10, false}, {"saturation", 0, 0, 10, false},
        {"hue", 0, 0, 0.5, false}},
       {}},
      {"auto_augment", false, 1.0, {}, {{"policy", {"cifar10"}}}},
      {"rand_augment", false, 1.0, {{"n", 2, 1, 16, true}, {"m", 9, 0, 1000, true}, {"bins", 31, 2, 1000, true}}, {}},
      {"trivial_augment_wide", false, 1.0, {{"bins", 31, 2, 1000, true}}, {}},
      {"random_erasing", true, 0.5,
       {{"scale_min", 0.02, 0, 1, false},
        {"scale_max", 0.33, 0, 1, false},
        {"ratio_min", 0.3, 0.01, 100, false},
        {"ratio_max", 3.3, 0.01, 100, false}},
       {{"value", {"0", "random"}}}},
  };
  return s;
}

const Spec* find_spec(const std::string& name) {
  for (const auto& s : specs())
    if (name == s.name) return &s;
  return nullptr;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// Splits at `sep` outside parentheses.
std::vector<std::string> split_top(const std::string& s, const std::string& seps) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && seps.find(c) != std::string::npos) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string fmt_num(double v) { return fmt::format("{}", v); }

// ------------------------------------------------------------------------------ policy operations

enum class Op { Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness,
                Posterize, Solarize, AutoContrast, Equalize, Invert };

// torch.linspace(start, end, steps)[i] in float32.
float linspace(float start, float end, int steps, int i) {
  if (steps == 1) return start;
  const float step = (end - start) / static_cast<float>(steps - 1);
  return i < steps / 2 ? start + step * static_cast<float>(i) : end - step * static_cast<float>(steps - i - 1);
}

// The magnitude of `op` at bin `i` of `bins` in one of torchvision's augmentation spaces.
enum class Space { AutoAugment, RandAugment, TrivialWide };
bool signed_op(Op op) {
  switch (op) {
    case Op::ShearX: case Op::ShearY: case Op::TranslateX: case Op::TranslateY: case Op::Rotate:
    case Op::Brightness: case Op::Color: case Op::Contrast: case Op::Sharpness: return true;
    default: return false;
  }
}
bool has_magnitude(Op op) {
  return !(op == Op::Identity || op == Op::AutoContrast || op == Op::Equalize || op == Op::Invert);
}
float magnitude(Space space, Op op, int bins, int i) {
  const bool wide = space == Space::TrivialWide;
  switch (op) {
    case Op::ShearX: case Op::ShearY: return linspace(0.0f, wide ? 0.99f : 0.3f, bins, i);
    case Op::TranslateX: case Op::TranslateY:
      return linspace(0.0f, wide ? 32.0f : static_cast<float>(150.0 / 331.0 * ops::S), bins, i);
    case Op::Rotate: return linspace(0.0f, wide ? 135.0f : 30.0f, bins, i);
    case Op::Brightness: case Op::Color: case Op::Contrast: case Op::Sharpness:
      return linspace(0.0f, wide ? 0.99f : 0.9f, bins, i);
    case Op::Posterize: {
      const float div = static_cast<float>((bins - 1) / (wide ? 6.0 : 4.0));
      return static_cast<float>(8 - static_cast<int>(std::nearbyint(static_cast<float>(i) / div)));
    }
    case Op::Solarize: return linspace(255.0f, 0.0f, bins, i);
    default: return 0.0f;
  }
}

// torchvision autoaugment._apply_op with NEAREST interpolation and no fill (zeros).
void apply_op(ops::Image*& cur, ops::Image*& other, Op op, float m) {
  using ops::Interp;
  switch (op) {
    case Op::Identity: return;
    case Op::ShearX: ops::shear_x(*cur, *other, static_cast<float>(std::atan(m) * 180.0 / M_PI), Interp::Nearest, 0); break;
    case Op::ShearY: ops::shear_y(*cur, *other, static_cast<float>(std::atan(m) * 180.0 / M_PI), Interp::Nearest, 0); break;
    case Op::TranslateX:
      ops::affine(*cur, *other, 0.0f, static_cast<float>(static_cast<int>(m)), 0.0f, 1.0f, 0.0f, 0.0f, Interp::Nearest, 0);
      break;
    case Op::TranslateY:
      ops::affine(*cur, *other, 0.0f, 0.0f, static_cast<float>(static_cast<int>(m)), 1.0f, 0.0f, 0.0f, Interp::Nearest, 0);
      break;
    case Op::Rotate: ops::rotate(*cur, *other, m, Interp::Nearest, 0); break;
    case Op::Brightness: ops::adjust_brightness(*cur, 1.0 + m); return;
    case Op::Color: ops::adjust_saturation(*cur, 1.0 + m); return;
    case Op::Contrast: ops::adjust_contrast(*cur, 1.0 + m); return;
    case Op::Sharpness: ops::adjust_sharpness(*cur, 1.0 + m); return;
    case Op::Posterize: ops::posterize(*cur, static_cast<int>(m)); return;
    case Op::Solarize: ops::solarize(*cur, m); return;
    case Op::AutoContrast: ops::autocontrast(*cur); return;
    case Op::Equalize: ops::equalize(*cur); return;
    case Op::Invert: ops::invert(*cur); return;
  }
  std::swap(cur, other);  // geometric ops wrote into `other`
}

// torchvision's AutoAugmentPolicy.CIFAR10: 25 sub-policies of two (op, probability, magnitude bin or -1).
struct PolicyOp {
  Op op;
  float p;
  int bin;
};
const PolicyOp kCifar10[25][2] = {
    {{Op::Invert, 0.1f, -1}, {Op::Contrast, 0.2f, 6}},      {{Op::Rotate, 0.7f, 2}, {Op::TranslateX, 0.3f, 9}},
    {{Op::Sharpness, 0.8f, 1}, {Op::Sharpness, 0.9f, 3}},   {{Op::ShearY, 0.5f, 8}, {Op::TranslateY, 0.7f, 9}},
    {{Op::AutoContrast, 0.5f, -1}, {Op::Equalize, 0.9f, -1}}, {{Op::ShearY, 0.2f, 7}, {Op::Posterize, 0.3f, 7}},
    {{Op::Color, 0.4f, 3}, {Op::Brightness, 0.6f, 7}},      {{Op::Sharpness, 0.3f, 9}, {Op::Brightness, 0.7f, 9}},
    {{Op::Equalize, 0.6f, -1}, {Op::Equalize, 0.5f, -1}},   {{Op::Contrast, 0.6f, 7}, {Op::Sharpness, 0.6f, 5}},
    {{Op::Color, 0.7f, 7}, {Op::TranslateX, 0.5f, 8}},      {{Op::Equalize, 0.3f, -1}, {Op::AutoContrast, 0.4f, -1}},
    {{Op::TranslateY, 0.4f, 3}, {Op::Sharpness, 0.2f, 6}},  {{Op::Brightness, 0.9f, 6}, {Op::Color, 0.2f, 8}},
    {{Op::Solarize, 0.5f, 2}, {Op::Invert, 0.0f, -1}},      {{Op::Equalize, 0.2f, -1}, {Op::AutoContrast, 0.6f, -1}},
    {{Op::Equalize, 0.2f, -1}, {Op::Equalize, 0.6f, -1}},   {{Op::Color, 0.9f, 9}, {Op::Equalize, 0.6f, -1}},
    {{Op::AutoContrast, 0.8f, -1}, {Op::Solarize, 0.2f, 8}}, {{Op::Brightness, 0.1f, 3}, {Op::Color, 0.7f, 0}},
    {{Op::Solarize, 0.4f, 5}, {Op::AutoContrast, 0.9f, -1}}, {{Op::TranslateY, 0.9f, 9}, {Op::TranslateY, 0.7f, 9}},
    {{Op::AutoContrast, 0.9f, -1}, {Op::Solarize, 0.8f, 3}}, {{Op::Equalize, 0.8f, -1}, {Op::Invert, 0.1f, -1}},
    {{Op::TranslateY, 0.7f, 9}, {Op::AutoContrast, 0.9f, -1}},
};

// RandAugment's and TrivialAugmentWide's operation lists, in torchvision's order.
const Op kRandOps[14] = {Op::Identity,   Op::ShearX,   Op::ShearY,    Op::TranslateX, Op::TranslateY,
                         Op::Rotate,     Op::Brightness, Op::Color,   Op::Contrast,   Op::Sharpness,
                         Op::Posterize,  Op::Solarize, Op::AutoContrast, Op::Equalize};

float uniform(Rng& rng, double lo, double hi) { return static_cast<float>(lo + (hi - lo) * rng.uniform()); }

const char* op_name(Op op) {
  static const char* names[] = {"Identity", "ShearX",     "ShearY", "TranslateX", "TranslateY",
                                "Rotate",   "Brightness", "Color",  "Contrast",   "Sharpness",
                                "Posterize", "Solarize",  "AutoContrast", "Equalize", "Invert"};
  return names[static_cast<int>(op)];
}

}  // namespace

std::vector<OpMagnitudes> augmentation_space(const std::string& space, int bins) {
  const Space sp = space == "auto_augment" ? Space::AutoAugment
                   : space == "rand_augment" ? Space::RandAugment
                                             : Space::TrivialWide;
  // Built in place (GCC 12 at -O3 warns falsely about assigning into an empty vector).
  const std::vector<Op> list =
      sp == Space::AutoAugment
          ? std::vector<Op>{Op::ShearX,    Op::ShearY,    Op::TranslateX, Op::TranslateY,   Op::Rotate,
                            Op::Brightness, Op::Color,   Op::Contrast,   Op::Sharpness,    Op::Posterize,
                            Op::Solarize,  Op::AutoContrast, Op::Equalize, Op::Invert}
          : std::vector<Op>(std::begin(kRandOps), std::end(kRandOps));
  std::vector<OpMagnitudes> out;
  for (Op op : list) {
    OpMagnitudes m{op_name(op), {}, signed_op(op)};
    if (has_magnitude(op))
      for (int i = 0; i < bins; ++i) m.values.push_back(magnitude(sp, op, bins, i));
    out.push_back(m);
  }
  return out;
}

std::vector<std::vector<PolicyStep>> auto_augment_cifar10_policy() {
  std::vector<std::vector<PolicyStep>> out;
  for (const auto& sub : kCifar10) out.push_back({{op_name(sub[0].op), sub[0].p, sub[0].bin}, {op_name(sub[1].op), sub[1].p, sub[1].bin}});
  return out;
}

std::string preset_spec(const std::string& name) {
  if (name == "none") return "";
  if (name == "standard") return "random_crop(padding=4); hflip";
  if (name == "seed")
    return "random_crop(padding=4); hflip; rotate(degrees=15, p=0.5); "
           "color_jitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1, p=0.8); cutout(holes=1, size=8, p=0.5)";
  if (name == "autoaugment") return "random_crop(padding=4); hflip; auto_augment; cutout(size=16)";
  if (name == "randaugment") return "random_crop(padding=4); hflip; rand_augment(n=2, m=9); cutout(size=16)";
  if (name == "trivialaugment") return "random_crop(padding=4); hflip; trivial_augment_wide; cutout(size=16)";
  return "";
}

Pipeline Pipeline::parse(const std::string& spec, const std::string& key) {
  auto bad = [&](const std::string& msg) { return ConfigError(fmt::format("config key '{}': {}", key, msg)); };
  Pipeline pl;
  std::vector<std::string> items = split_top(spec, ";\n");
  for (size_t k = 0; k < items.size(); ++k) {
    const std::string item = trim(items[k]);
    if (item.empty()) continue;
    const size_t open = item.find('(');
    const std::string name = trim(item.substr(0, open));
    if (const std::string expanded = preset_spec(name); !expanded.empty() || name == "none") {
      if (open != std::string::npos) throw bad(fmt::format("preset '{}' takes no parameters", name));
      const auto sub = split_top(expanded, ";");
      items.insert(items.begin() + static_cast<std::ptrdiff_t>(k) + 1, sub.begin(), sub.end());
      continue;
    }
    const Spec* sp = find_spec(name);
    if (!sp) {
      std::string all;
      for (const auto& s : specs()) all += std::string(all.empty() ? "" : ", ") + s.name;
      throw bad(fmt::format("unknown transform '{}' (transforms: {}; presets: none, standard, seed, autoaugment, "
                            "randaugment, trivialaugment)",
                            name, all));
    }
    Transform t;
    t.name = name;
    t.p = sp->default_p;
    for (const auto& np : sp->nums) t.num[np.name] = np.def;
    for (const auto& ep : sp->enums) t.str[ep.name] = ep.values.front();
    if (open != std::string::npos) {
      const size_t close = item.rfind(')');
      if (close == std::string::npos || close < open || !trim(item.substr(close + 1)).empty())
        throw bad(fmt::format("transform '{}': unbalanced parentheses in '{}'", name, item));
      for (const std::string& raw : split_top(item.substr(open + 1, close - open - 1), ",")) {
        const std::string arg = trim(raw);
        if (arg.empty()) continue;
        const size_t eq = arg.find('=');
        if (eq == std::string::npos) throw bad(fmt::format("transform '{}': expected name=value, got '{}'", name, arg));
        const std::string pname = trim(arg.substr(0, eq)), value = trim(arg.substr(eq + 1));
        auto names = [&] {
          std::string all = "p";
          for (const auto& np : sp->nums) all += std::string(", ") + np.name;
          for (const auto& ep : sp->enums) all += std::string(", ") + ep.name;
          return all;
        };
        if (pname == "p") {
          char* end = nullptr;
          const double v = std::strtod(value.c_str(), &end);
          if (end == value.c_str() || *end || !(v >= 0 && v <= 1))
            throw bad(fmt::format("transform '{}': p = '{}' must be a probability in [0, 1]", name, value));
          t.p = v;
          continue;
        }
        auto np = std::find_if(sp->nums.begin(), sp->nums.end(), [&](const NumParam& x) { return pname == x.name; });
        if (np != sp->nums.end()) {
          char* end = nullptr;
          const double v = std::strtod(value.c_str(), &end);
          if (end == value.c_str() || *end || !std::isfinite(v))
            throw bad(fmt::format("transform '{}': parameter '{}' = '{}' is not a number", name, pname, value));
          if (v < np->lo || v > np->hi || (np->integer && v != std::floor(v)))
            throw bad(fmt::format("transform '{}': parameter '{}' = {} must be {} in [{}, {}]", name, pname, value,
                                  np->integer ? "an integer" : "a number", fmt_num(np->lo), fmt_num(np->hi)));
          t.num[pname] = v;
          continue;
        }
        auto ep = std::find_if(sp->enums.begin(), sp->enums.end(), [&](const EnumParam& x) { return pname == x.name; });
        if (ep != sp->enums.end()) {
          if (std::find(ep->values.begin(), ep->values.end(), value) == ep->values.end()) {
            std::string all;
            for (const auto& v : ep->values) all += (all.empty() ? "" : ", ") + v;
            throw bad(fmt::format("transform '{}': parameter '{}' = '{}' must be one of {}", name, pname, value, all));
          }
          t.str[pname] = value;
          continue;
        }
        throw bad(fmt::format("transform '{}' has no parameter '{}' (parameters: {})", name, pname, names()));
      }
    }
    if (name == "affine" && t.num["scale_min"] > t.num["scale_max"])
      throw bad("transform 'affine': scale_min must not exceed scale_max");
    if (name == "random_erasing" &&
        (t.num["scale_min"] > t.num["scale_max"] || t.num["ratio_min"] > t.num["ratio_max"]))
      throw bad("transform 'random_erasing': scale_min/ratio_min must not exceed scale_max/ratio_max");
    if (name == "rand_augment" && t.num["m"] >= t.num["bins"])
      throw bad(fmt::format("transform 'rand_augment': m = {} must be below bins = {}", t.num["m"], t.num["bins"]));
    if (!sp->is_float && pl.float_begin_ < pl.steps_.size())
      throw bad(fmt::format("transform '{}' comes after random_erasing, which works on the normalised image and must "
                            "come last",
                            name));
    pl.steps_.push_back(t);
    if (!sp->is_float) pl.float_begin_ = pl.steps_.size();
  }
  return pl;
}

std::string Pipeline::to_string() const {
  std::string out;
  for (const auto& t : steps_) {
    std::string args;
    for (const auto& [k, v] : t.num) args += fmt::format("{}{}={}", args.empty() ? "" : ", ", k, fmt_num(v));
    for (const auto& [k, v] : t.str) args += fmt::format("{}{}={}", args.empty() ? "" : ", ", k, v);
    args += fmt::format("{}p={}", args.empty() ? "" : ", ", fmt_num(t.p));
    out += fmt::format("{}{}({})", out.empty() ? "" : "; ", t.name, args);
  }
  return out.empty() ? "none" : out;
}

void Pipeline::apply(ops::Image& img, Rng& rng) const {
  ops::Image spare;
  ops::Image* cur = &img;
  ops::Image* other = &spare;
  for (size_t k = 0; k < float_begin_; ++k) {
    const Transform& t = steps_[k];
    const std::string& n = t.name;
    if (n == "hflip") {
      if (rng.uniform() < t.p) ops::hflip(*cur);
      continue;
    }
    if (t.p < 1.0 && !(rng.uniform() < t.p)) continue;
    const auto interp = [&] {
      auto it = t.str.find("interpolation");
      return it != t.str.end() && it->second == "nearest" ? ops::Interp::Nearest : ops::Interp::Bilinear;
    };
    const auto fill = [&] { return static_cast<uint8_t>(t.num.at("fill")); };
    if (n == "random_crop") {
      const int pad = static_cast<int>(t.num.at("padding"));
      const int top = static_cast<int>(rng.below(static_cast<uint64_t>(2 * pad + 1)));
      const int left = static_cast<int>(rng.below(static_cast<uint64_t>(2 * pad + 1)));
      const std::string& m = t.str.at("padding_mode");
      const ops::PadMode mode = m == "reflect" ? ops::PadMode::Reflect
                                : m == "edge" ? ops::PadMode::Edge
                                : m == "symmetric" ? ops::PadMode::Symmetric
                                                   : ops::PadMode::Constant;
      ops::pad_crop(*cur, *other, pad, mode, fill(), top, left);
      std::swap(cur, other);
    } else if (n == "rotate") {
      const double d = t.num.at("degrees");
      ops::rotate(*cur, *other, uniform(rng, -d, d), interp(), fill());
      std::swap(cur, other);
    } else if (n == "affine") {
      const double d = t.num.at("degrees"), tr = t.num.at("translate") * ops::S, sh = t.num.at("shear");
      const float angle = uniform(rng, -d, d);
      const float tx = std::nearbyint(uniform(rng, -tr, tr)), ty = std::nearbyint(uniform(rng, -tr, tr));
      const float scale = uniform(rng, t.num.at("scale_min"), t.num.at("scale_max"));
      const float shear = uniform(rng, -sh, sh);
      ops::affine(*cur, *other, angle, tx, ty, scale, shear, 0.0f, interp(), fill());
      std::swap(cur, other);
    } else if (n == "cutout") {
      const int size = static_cast<int>(t.num.at("size")), holes = static_cast<int>(t.num.at("holes"));
      for (int h = 0; h < holes; ++h) {
        const int cy = static_cast<int>(rng.below(ops::S)), cx = static_cast<int>(rng.below(ops::S));
        ops::erase(*cur, cy - size / 2, cx - size / 2, size, size, fill());
      }
    } else if (n == "color_jitter") {
      int order[4] = {0, 1, 2, 3};
      rng.shuffle(order, order + 4);
      float f[4];
      const char* keys[4] = {"brightness", "contrast", "saturation", "hue"};
      for (int i = 0; i < 4; ++i) {
        const double v = t.num.at(keys[i]);
        f[i] = i == 3 ? uniform(rng, -v, v) : uniform(rng, std::max(0.0, 1.0 - v), 1.0 + v);
      }
      for (int i : order) {
        if (t.num.at(keys[i]) == 0) continue;
        switch (i) {
          case 0: ops::adjust_brightness(*cur, f[0]); break;
          case 1: ops::adjust_contrast(*cur, f[1]); break;
          case 2: ops::adjust_saturation(*cur, f[2]); break;
          default: ops::adjust_hue(*cur, f[3]); break;
        }
      }
    } else if (n == "auto_augment") {
      const auto& sub = kCifar10[rng.below(25)];
      const double probs[2] = {rng.uniform(), rng.uniform()};
      const bool negative[2] = {rng.below(2) == 0, rng.below(2) == 0};
      for (int i = 0; i < 2; ++i) {
        if (!(probs[i] <= sub[i].p)) continue;
        float m = sub[i].bin >= 0 ? magnitude(Space::AutoAugment, sub[i].op, 10, sub[i].bin) : 0.0f;
        if (signed_op(sub[i].op) && negative[i]) m = -m;
        apply_op(cur, other, sub[i].op, m);
      }
    } else if (n == "rand_augment") {
      const int bins = static_cast<int>(t.num.at("bins")), mag = static_cast<int>(t.num.at("m"));
      for (int i = 0; i < static_cast<int>(t.num.at("n")); ++i) {
        const Op op = kRandOps[rng.below(14)];
        float m = has_magnitude(op) ? magnitude(Space::RandAugment, op, bins, mag) : 0.0f;
        if (signed_op(op) && rng.below(2)) m = -m;
        apply_op(cur, other, op, m);
      }
    } else if (n == "trivial_augment_wide") {
      const int bins = static_cast<int>(t.num.at("bins"));
      const Op op = kRandOps[rng.below(14)];
      float m = has_magnitude(op) ? magnitude(Space::TrivialWide, op, bins, static_cast<int>(rng.below(bins))) : 0.0f;
      if (signed_op(op) && rng.below(2)) m = -m;
      apply_op(cur, other, op, m);
    }
  }
  if (cur != &img) img = *cur;
}

void Pipeline::apply_float(float* img, bool hwc, Rng& rng) const {
  constexpr int S = ops::S;
  for (size_t k = float_begin_; k < steps_.size(); ++k) {
    const Transform& t = steps_[k];  // random_erasing, as torchvision's RandomErasing
    if (!(rng.uniform() < t.p)) continue;
    const double log_lo = std::log(t.num.at("ratio_min")), log_hi = std::log(t.num.at("ratio_max"));
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double area = S * S * (t.num.at("scale_min") + (t.num.at("scale_max") - t.num.at("scale_min")) * rng.uniform());
      const double aspect = std::exp(log_lo + (log_hi - log_lo) * rng.uniform());
      const int h = static_cast<int>(std::nearbyint(std::sqrt(area * aspect)));
      const int w = static_cast<int>(std::nearbyint(std::sqrt(area / aspect)));
      if (!(h < S && w < S)) continue;
      const int top = static_cast<int>(rng.below(static_cast<uint64_t>(S - h + 1)));
      const int left = static_cast<int>(rng.below(static_cast<uint64_t>(S - w + 1)));
      const bool random = t.str.at("value") == "random";
      for (int c = 0; c < 3; ++c)
        for (int y = top; y < top + h; ++y)
          for (int x = left; x < left + w; ++x) {
            const float v = random ? static_cast<float>(rng.normal()) : 0.0f;
            img[hwc ? (y * S + x) * 3 + c : c * S * S + y * S + x] = v;
          }
      break;
    }
  }
}

}  // namespace cifar::data
