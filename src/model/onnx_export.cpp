#include "model/onnx_export.h"

#include <torch/torch.h>

#include <variant>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/protobuf.h"

namespace cifar::model {

namespace {

// onnx.proto field numbers and enums (ONNX IR version 7).
namespace f {
constexpr int kModelIrVersion = 1, kModelProducerName = 2, kModelProducerVersion = 3, kModelDocString = 6,
              kModelGraph = 7, kModelOpsetImport = 8, kModelMetadata = 14;
constexpr int kOpsetDomain = 1, kOpsetVersion = 2;
constexpr int kGraphNode = 1, kGraphName = 2, kGraphInitializer = 5, kGraphInput = 11, kGraphOutput = 12;
constexpr int kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5;
constexpr int kAttrName = 1, kAttrI = 3, kAttrInts = 8, kAttrType = 20;
constexpr int kAttrTypeInt = 2, kAttrTypeInts = 7;
constexpr int kTensorDims = 1, kTensorDataType = 2, kTensorName = 8, kTensorRawData = 9;
constexpr int kValueName = 1, kValueType = 2;
constexpr int kTypeTensor = 1, kTensorElemType = 1, kTensorShape = 2;
constexpr int kShapeDim = 1, kDimValue = 1, kDimParam = 2;
constexpr int kEntryKey = 1, kEntryValue = 2;
constexpr int kFloat = 1, kUint8 = 2;
}  // namespace f

struct Attr {
  std::string name;
  std::vector<int64_t> ints;
  bool is_list = true;
};

class Graph {
 public:
  // A float32 initializer from any CPU tensor (converted, made contiguous).
  std::string constant(const std::string& name, const torch::Tensor& t) {
    const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
    pb::Writer w;
    for (int64_t d : c.sizes()) w.int64(f::kTensorDims, d);
    w.int64(f::kTensorDataType, f::kFloat).bytes(f::kTensorName, name);
    w.bytes(f::kTensorRawData, std::string_view(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float)));
    init_.message(f::kGraphInitializer, w);
    return name;
  }

  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& name,
                   const std::vector<Attr>& attrs = {}, const std::string& output = "") {
    pb::Writer w;
    for (const auto& i : inputs) w.bytes(f::kNodeInput, i);
    const std::string out = output.empty() ? name + ".out" : output;
    w.bytes(f::kNodeOutput, out).bytes(f::kNodeName, name).bytes(f::kNodeOpType, op);
    for (const auto& a : attrs) {
      pb::Writer aw;
      aw.bytes(f::kAttrName, a.name);
      if (a.is_list) {
        for (int64_t v : a.ints) aw.int64(f::kAttrInts, v);
        aw.int64(f::kAttrType, f::kAttrTypeInts);
      } else {
        aw.int64(f::kAttrI, a.ints.at(0)).int64(f::kAttrType, f::kAttrTypeInt);
      }
      w.message(f::kNodeAttribute, aw);
    }
    nodes_.push_back(w.take());
    return out;
  }

  // x * scale + shift, per channel of an NCHW tensor.
  std::string affine(const std::string& x, const std::string& name, const torch::Tensor& scale,
                     const torch::Tensor& shift) {
    const int64_t c = scale.numel();
    const std::string s = constant(name + ".scale", scale.reshape({1, c, 1, 1}));
    const std::string b = constant(name + ".shift", shift.reshape({1, c, 1, 1}));
    return node("Add", {node("Mul", {x, s}, name + ".mul"), b}, name + ".add");
  }

  std::string conv(const std::string& x, const std::string& name, const torch::nn::Conv2dImpl& c,
                   const torch::Tensor& weight, const torch::Tensor* bias) {
    const int64_t k = weight.size(2), stride = (*c.options.stride())[0], pad = k / 2;
    std::vector<std::string> in = {x, constant(name + ".weight", weight)};
    if (bias) in.push_back(constant(name + ".bias", *bias));
    return node("Conv", in, name,
                {{"kernel_shape", {k, k}}, {"strides", {stride, stride}}, {"pads", {pad, pad, pad, pad}},
                 {"dilations", {1, 1}}, {"group", {1}, false}});
  }

  const std::vector<std::string>& nodes() const { return nodes_; }
  const pb::Writer& initializers() const { return init_; }

 private:
  std::vector<std::string> nodes_;
  pb::Writer init_;  // a run of already framed initializer fields
};

// Batch norm in inference mode as scale and shift (computed in double, then rounded once to float).
std::pair<torch::Tensor, torch::Tensor> bn_affine(const torch::nn::BatchNorm2dImpl& bn) {
  const torch::Tensor var = bn.running_var.to(torch::kDouble), mean = bn.running_mean.to(torch::kDouble);
  const torch::Tensor scale = bn.weight.detach().to(torch::kDouble) / torch::sqrt(var + bn.options.eps());
  const torch::Tensor shift = bn.bias.detach().to(torch::kDouble) - mean * scale;
  return {scale, shift};
}

std::string value_info(const std::string& name, int elem_type, const std::vector<std::variant<int64_t, std::string>>& dims) {
  pb::Writer shape;
  for (const auto& d : dims) {
    pb::Writer dim;
    if (std::holds_alternative<int64_t>(d)) dim.int64(f::kDimValue, std::get<int64_t>(d));
    else dim.bytes(f::kDimParam, std::get<std::string>(d));
    shape.message(f::kShapeDim, dim);
  }
  pb::Writer tensor;
  tensor.int64(f::kTensorElemType, elem_type).message(f::kTensorShape, shape);
  pb::Writer type;
  type.message(f::kTypeTensor, tensor);
  pb::Writer vi;
  vi.bytes(f::kValueName, name).message(f::kValueType, type);
  return vi.take();
}

}  // namespace

std::string onnx_model(const WideResNetImpl& net, const ArtifactInfo& info, const OnnxOptions& opt) {
  if (info.arch.airbench())
    fail("ONNX export supports WideResNets only, and this model is {}: serve it with `cifar100 serve`, or train "
         "with arch=wrn for an ONNX model", info.arch.name());
  torch::NoGradGuard no_grad;
  Graph g;
  const int64_t size = info.image_size;
  const auto d = [](float v) { return static_cast<double>(v); };
  const torch::Tensor mean = torch::tensor({d(info.mean[0]), d(info.mean[1]), d(info.mean[2])}, torch::kDouble);
  const torch::Tensor stdv = torch::tensor({d(info.std[0]), d(info.std[1]), d(info.std[2])}, torch::kDouble);

  std::string x = "image";
  if (opt.uint8_input) {  // (p / 255 - mean) / std = p * (1 / (255 std)) + (-mean / std)
    x = g.node("Cast", {x}, "input.cast", {{"to", {f::kFloat}, false}});
    x = g.affine(x, "input.normalize", 1.0 / (255.0 * stdv), -mean / stdv);
  }
  x = g.conv(x, "stem", *net.stem, net.stem->weight.detach(), nullptr);
  int layer = 0;
  for (const auto* seq : {&net.layer1, &net.layer2, &net.layer3}) {
    ++layer;
    const auto blocks = (*seq)->children();
    for (size_t b = 0; b < blocks.size(); ++b) {
      const auto& blk = *blocks[b]->as<WideBasicImpl>();
      const std::string p = "layer" + std::to_string(layer) + "." + std::to_string(b) + ".";
      const auto [s1, t1] = bn_affine(*blk.bn1);
      const std::string o = g.node("Relu", {g.affine(x, p + "bn1", s1, t1)}, p + "relu1");
      const auto [s2, t2] = bn_affine(*blk.bn2);  // bn2 follows conv1 directly: folded into it
      const torch::Tensor w1 = blk.conv1->weight.detach().to(torch::kDouble) * s2.reshape({-1, 1, 1, 1});
      std::string y = g.conv(o, p + "conv1", *blk.conv1, w1, &t2);
      y = g.node("Relu", {y}, p + "relu2");
      y = g.conv(y, p + "conv2", *blk.conv2, blk.conv2->weight.detach(), nullptr);  // dropout: identity
      const std::string skip = blk.shortcut ? g.conv(o, p + "shortcut", *blk.shortcut, blk.shortcut->weight.detach(), nullptr) : x;
      x = g.node("Add", {y, skip}, p + "add");
    }
  }
  const auto [s, t] = bn_affine(*net.bn);
  x = g.node("Relu", {g.affine(x, "bn", s, t)}, "relu");
  x = g.node("GlobalAveragePool", {x}, "pool");
  x = g.node("Flatten", {x}, "flatten", {{"axis", {1}, false}});
  const std::string w = g.constant("fc.weight", net.fc->weight), bias = g.constant("fc.bias", net.fc->bias);
  g.node("Gemm", {x, w, bias}, "fc", {{"transB", {1}, false}}, "logits");
  pb::Writer graph;
  for (const auto& n : g.nodes()) graph.bytes(f::kGraphNode, n);
  graph.bytes(f::kGraphName, info.arch.name());
  std::string framed = graph.take();
  framed += g.initializers().str();  // already framed as field 5 of GraphProto
  pb::Writer tail;
  tail.bytes(f::kGraphInput, value_info("image", opt.uint8_input ? f::kUint8 : f::kFloat,
                                        {std::string("batch"), int64_t{3}, size, size}));
  tail.bytes(f::kGraphOutput, value_info("logits", f::kFloat, {std::string("batch"), info.arch.num_classes}));
  framed += tail.str();

  pb::Writer model;
  model.int64(f::kModelIrVersion, 7).bytes(f::kModelProducerName, "cifar100")
      .bytes(f::kModelProducerVersion, CIFAR100_VERSION_STRING)
      .bytes(f::kModelDocString, info.arch.name() + " trained on CIFAR-100 by cifar100; input \"image\" NCHW " +
                                     (opt.uint8_input ? "uint8 RGB pixels 0-255" : "float32 normalised") +
                                     ", output \"logits\"");
  model.bytes(f::kModelGraph, framed);
  pb::Writer opset;
  opset.bytes(f::kOpsetDomain, "").int64(f::kOpsetVersion, 13);
  model.message(f::kModelOpsetImport, opset);
  const std::vector<std::pair<std::string, std::string>> meta = {
      {"architecture", info.arch.name()},
      {"num_classes", std::to_string(info.arch.num_classes)},
      {"image_size", std::to_string(size)},
      {"mean", nlohmann::json(info.mean).dump()},
      {"std", nlohmann::json(info.std).dump()},
      {"class_names", nlohmann::json(info.class_names).dump()},
      {"input_dtype", opt.uint8_input ? "uint8" : "float"},
      {"input", opt.uint8_input ? "uint8 RGB pixels 0-255, NCHW [batch, 3, " + std::to_string(size) + ", " +
                                      std::to_string(size) + "]; normalised inside the model"
                                : "float32 NCHW [batch, 3, " + std::to_string(size) + ", " + std::to_string(size) +
                                      "], normalised: (pixel / 255 - mean) / std per channel"},
      {"output", "logits [batch, num_classes]; softmax gives the class probabilities"},
      {"metrics", info.metrics.dump()},
  };
  for (const auto& [k, v] : meta) {
    pb::Writer e;
    e.bytes(f::kEntryKey, k).bytes(f::kEntryValue, v);
    model.message(f::kModelMetadata, e);
  }
  return model.take();
}

void write_onnx(const std::string& path, const WideResNetImpl& net, const ArtifactInfo& info, const OnnxOptions& opt) {
  fs::write_atomic(path, onnx_model(net, info, opt));
}

}  // namespace cifar::model
