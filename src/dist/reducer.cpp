#include "dist/reducer.h"

#include <algorithm>

#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/torch.h>

#include "common/error.h"
#include "dist/group.h"

namespace cifar::dist {

namespace {
using Clock = std::chrono::steady_clock;
double now_seconds() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }
}  // namespace

struct Reducer::Bucket {
  at::Tensor flat;
  std::vector<size_t> params;
  size_t pending = 0;
  bool launched = false;
  c10::intrusive_ptr<c10d::Work> work;
  double launched_at = 0;
  std::shared_ptr<std::atomic<double>> done_at = std::make_shared<std::atomic<double>>(0.0);
};

Reducer::Reducer(Group& group, std::vector<at::Tensor> params, int64_t bucket_bytes, int64_t first_bucket_bytes,
                 int64_t extras)
    : group_(group), params_(std::move(params)), extras_(extras) {
  if (params_.empty()) fail("reducer: no parameters");
  const auto options = params_.front().options();
  for (const auto& p : params_)
    if (p.scalar_type() != options.dtype().toScalarType() || p.device() != options.device())
      fail("reducer: every parameter must share one dtype and device");
  where_.resize(params_.size());
  // Reverse order: backward produces the last layers' gradients first.
  std::vector<std::vector<size_t>> groups(1);
  int64_t used = 0, cap = first_bucket_bytes;
  const int64_t elem = static_cast<int64_t>(params_.front().element_size());
  for (size_t k = params_.size(); k-- > 0;) {
    const int64_t bytes = params_[k].numel() * elem;
    if (!groups.back().empty() && used + bytes > cap) {
      groups.emplace_back();
      used = 0;
      cap = bucket_bytes;
    }
    groups.back().push_back(k);
    used += bytes;
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    auto b = std::make_unique<Bucket>();
    int64_t off = 0;
    for (size_t k : groups[g]) {
      where_[k] = {g, off};
      off += params_[k].numel();
    }
    if (g + 1 == groups.size()) off += extras_;
    b->flat = torch::zeros({off}, options);
    b->params = groups[g];
    buckets_.push_back(std::move(b));
  }
  for (size_t k = 0; k < params_.size(); ++k) {
    if (!params_[k].requires_grad()) fail("reducer: parameter {} does not require a gradient", k);
    hooks_.push_back(params_[k].register_hook([this, k](const at::Tensor& g) { on_grad(k, g); }));
  }
}

Reducer::~Reducer() {
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
  for (auto& b : buckets_)
    if (b->work) try {
        b->work->wait();
      } catch (...) {
      }
}

int64_t Reducer::bytes() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b->flat.numel() * static_cast<int64_t>(b->flat.element_size());
  return n;
}

void Reducer::prepare(const std::vector<at::Tensor>& extras) {
  if (static_cast<int64_t>(extras.size()) != extras_) fail("reducer: {} extras given, {} declared", extras.size(), extras_);
  Bucket& last = *buckets_.back();
  const int64_t base = last.flat.numel() - extras_;
  {
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < extras_; ++i) last.flat.narrow(0, base + i, 1).copy_(extras[static_cast<size_t>(i)].reshape({1}));
  }
  for (auto& b : buckets_) {
    b->pending = b->params.size();
    b->launched = false;
    b->work.reset();
    b->done_at->store(0.0);
  }
  next_launch_ = 0;
  armed_ = true;
}

void Reducer::on_grad(size_t k, const at::Tensor& grad) {
  if (!armed_ || !grad.defined()) return;
  const auto [bi, off] = where_[k];
  Bucket& b = *buckets_[bi];
  {
    torch::NoGradGuard no_grad;
    b.flat.narrow(0, off, params_[k].numel()).view(grad.sizes()).copy_(grad);
  }
  if (b.pending > 0) --b.pending;
  launch_ready();
}

void Reducer::launch(Bucket& b) {
  if (next_launch_ == 0) first_launch_ = Clock::now();
  b.launched = true;
  b.launched_at = now_seconds();
  b.work = group_.allreduce_async(b.flat);
  try {
    auto done = b.done_at;
    b.work->getFuture()->addCallback([done](c10::ivalue::Future&) { done->store(now_seconds()); });
  } catch (...) {  // a backend without futures: the busy time falls back to the wait
  }
  ++next_launch_;
}

void Reducer::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->pending == 0) launch(*buckets_[next_launch_]);
}

at::Tensor Reducer::finish() {
  if (!armed_) fail("reducer: finish() without prepare()");
  torch::NoGradGuard no_grad;
  // Parameters that got no gradient this step (unused) contribute zeros, so every rank launches every bucket.
  for (size_t i = next_launch_; i < buckets_.size(); ++i) {
    Bucket& b = *buckets_[i];
    if (b.pending > 0)
      for (size_t k : b.params)
        if (!params_[k].grad().defined()) b.flat.narrow(0, where_[k].second, params_[k].numel()).zero_();
    b.pending = 0;
  }
  const auto t_wait = Clock::now();
  launch_ready();
  double last_done = 0;
  for (auto& b : buckets_) {
    group_.wait(b->work, "the gradient all-reduce");
    last_done = std::max(last_done, b->done_at->load());
  }
  const auto t_end = Clock::now();
  stats_.exposed_seconds += std::chrono::duration<double>(t_end - t_wait).count();
  // Busy time: from the first launch to the last completion, less the gaps when nothing was in flight.
  double busy = 0, cur_start = -1, cur_end = -1;
  for (auto& b : buckets_) {
    const double s = b->launched_at;
    const double e = b->done_at->load() > 0 ? b->done_at->load() : now_seconds();
    if (cur_end < s) {
      if (cur_end > cur_start) busy += cur_end - cur_start;
      cur_start = s;
      cur_end = e;
    } else {
      cur_end = std::max(cur_end, e);
    }
  }
  if (cur_end > cur_start) busy += cur_end - cur_start;
  stats_.comm_busy_seconds += busy;
  ++stats_.steps;
  (void)last_done;
  for (size_t k = 0; k < params_.size(); ++k) {
    const auto [bi, off] = where_[k];
    at::Tensor sum = buckets_[bi]->flat.narrow(0, off, params_[k].numel()).view(params_[k].sizes());
    if (params_[k].grad().defined()) params_[k].mutable_grad().copy_(sum);
    else params_[k].mutable_grad() = sum.clone();
  }
  armed_ = false;
  Bucket& last = *buckets_.back();
  return last.flat.narrow(0, last.flat.numel() - extras_, extras_).clone();
}

ReducerStats Reducer::take_stats() {
  ReducerStats s = stats_;
  stats_ = {};
  return s;
}

}  // namespace cifar::dist
