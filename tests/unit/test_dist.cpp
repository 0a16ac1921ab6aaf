// Distributed pieces without a launcher: the sampler's shards (disjoint, covering, world-size independent
// batches) and, with two ranks as two threads over a real TCPStore and Gloo on loopback, the rendezvous,
// broadcast, all-gather and the bucketed gradient reducer (exact sums, every bucket, the extras).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <set>
#include <thread>

#include "common/error.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "dist/group.h"
#include "dist/reducer.h"
#include "support/synth.h"

using namespace cifar;

namespace {
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs `body(group)` on `world` ranks, one thread each; rethrows the first failure.
void with_ranks(int world, const std::function<void(dist::Group&)>& body) {
  const int port = free_port();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        dist::Topology t;
        t.rank = r;
        t.world = world;
        t.local_rank = r;
        t.local_world = world;
        t.master_port = port;
        dist::Group g(t, std::chrono::seconds(30), c10::Device(c10::kCPU));
        body(g);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}
}  // namespace

TEST(Sampler, ShardsAreDisjointCoverTheEpochAndKeepEveryRankBusy) {
  for (int64_t world = 1; world <= 4; ++world)
    for (int64_t n : {5, 97, 100, 103, 128, 129, 131})
      for (int64_t batch : {world * 4, world * 8, world * 13})
        for (bool drop_last : {false, true}) {
          if (n < world) continue;
          SCOPED_TRACE(testing::Message() << "world " << world << " n " << n << " batch " << batch << " drop_last "
                                          << drop_last);
          const int64_t batches = data::global_batches(n, batch, drop_last, world);
          std::vector<int> hits(static_cast<size_t>(n), 0);
          for (int64_t b = 0; b < batches; ++b) {
            const auto [gb, ge] = data::global_batch_range(n, batch, drop_last, world, b);
            int64_t prev_end = gb, smallest = INT64_MAX, largest = 0;
            for (int64_t r = 0; r < world; ++r) {
              const auto [lo, hi] = data::rank_share(gb, ge, r, world);
              EXPECT_EQ(lo, prev_end);  // contiguous, in rank order
              prev_end = hi;
              smallest = std::min(smallest, hi - lo);
              largest = std::max(largest, hi - lo);
              for (int64_t i = lo; i < hi; ++i) ++hits[static_cast<size_t>(i)];
            }
            EXPECT_EQ(prev_end, ge);
            EXPECT_GE(smallest, 1);            // every rank gets a sample of every batch
            EXPECT_LE(largest - smallest, 1);  // as even as possible
          }
          // Disjoint: nothing twice. Covering: everything once without drop_last; with it, all full batches.
          const int64_t covered = std::count(hits.begin(), hits.end(), 1);
          EXPECT_EQ(std::count_if(hits.begin(), hits.end(), [](int h) { return h > 1; }), 0);
          if (!drop_last) EXPECT_EQ(covered, n);
          else EXPECT_EQ(covered, n >= batch ? (n / batch) * batch : n);
        }
}

TEST(Sampler, ATailSmallerThanTheWorldJoinsTheBatchBefore) {
  EXPECT_EQ(data::global_batches(130, 64, false, 4), 2);  // 2 left over for 4 ranks
  EXPECT_EQ(data::global_batch_range(130, 64, false, 4, 1), (std::pair<int64_t, int64_t>{64, 130}));
  EXPECT_EQ(data::global_batches(130, 64, false, 2), 3);  // 2 left over for 2 ranks: a batch of its own
  EXPECT_THROW(data::global_batches(3, 4, false, 4), Error);
  EXPECT_THROW(data::global_batches(100, 2, false, 4), Error);
}

TEST(Sampler, TheRanksOfAStepSeeTheBatchOfOneProcess) {
  data::Split s = synth::make_split(300, 10, 5);
  std::vector<int64_t> idx(300);
  for (int64_t i = 0; i < 300; ++i) idx[static_cast<size_t>(i)] = i;
  data::LoaderOptions o;
  o.batch_size = 48;
  o.shuffle = true;
  o.seed = 7;
  o.augment = std::make_shared<const data::Pipeline>(data::Pipeline::parse("standard"));
  o.workers = 0;
  data::Loader one(s, idx, o);
  one.start_epoch(3);
  std::vector<data::Batch> whole;
  while (auto b = one.next()) whole.push_back(*b);
  for (int world : {2, 3, 4}) {
    std::vector<std::vector<data::Batch>> parts(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) {
      data::LoaderOptions ro = o;
      ro.rank = r;
      ro.world = world;
      data::Loader l(s, idx, ro);
      EXPECT_EQ(l.batches_per_epoch(), one.batches_per_epoch());
      l.start_epoch(3);
      while (auto b = l.next()) parts[static_cast<size_t>(r)].push_back(*b);
    }
    for (size_t b = 0; b < whole.size(); ++b) {
      std::vector<at::Tensor> imgs, labels;
      for (int r = 0; r < world; ++r) {
        const data::Batch& pb = parts[static_cast<size_t>(r)].at(b);
        EXPECT_EQ(pb.global_size, whole[b].images.size(0));
        imgs.push_back(pb.images);
        labels.push_back(pb.labels);
      }
      EXPECT_TRUE(torch::equal(torch::cat(imgs), whole[b].images)) << "world " << world << " batch " << b;
      EXPECT_TRUE(torch::equal(torch::cat(labels), whole[b].labels));
    }
  }
}

TEST(Group, BroadcastAndAllGatherOverGlooOnLoopback) {
  with_ranks(3, [](dist::Group& g) {
    // Rank 0's values reach everyone, whatever memory format each rank keeps.
    at::Tensor w = torch::arange(2 * 3 * 4 * 5, torch::kFloat32).view({2, 3, 4, 5}) * (g.rank() + 1);
    if (g.rank() == 1) w = w.contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor n = torch::full({4}, g.rank() + 10, torch::kInt64);
    std::vector<at::Tensor> ts{w, n};
    g.broadcast(ts);
    EXPECT_TRUE(torch::equal(w, torch::arange(2 * 3 * 4 * 5, torch::kFloat32).view({2, 3, 4, 5})));
    EXPECT_TRUE(torch::equal(n, torch::full({4}, 10, torch::kInt64)));
    EXPECT_EQ(g.allgather(1000 + static_cast<uint64_t>(g.rank())), (std::vector<uint64_t>{1000, 1001, 1002}));
  });
}

TEST(Reducer, SumsEveryGradientExactlyAcrossBucketsAndSteps) {
  with_ranks(2, [](dist::Group& g) {
    torch::manual_seed(1);
    std::vector<at::Tensor> params;
    for (int64_t n : {7, 300, 5, 64, 1000, 3})
      params.push_back(torch::randn({n}).requires_grad_(true));
    // Tiny buckets: several launches in order during backward.
    dist::Reducer red(g, params, /*bucket_bytes=*/1200, /*first_bucket_bytes=*/40, /*extras=*/2);
    EXPECT_GE(red.bucket_count(), 4u);
    for (int step = 0; step < 3; ++step) {
      // Each rank's gradient of parameter i is c(rank, i, step), known to both ranks.
      auto coef = [&](int rank, size_t i) {
        return torch::linspace(-1, 1, params[i].numel()) * (rank + 1) * (static_cast<double>(i) + 1) + step;
      };
      for (auto& p : params) p.mutable_grad() = at::Tensor();
      at::Tensor loss = torch::zeros({});
      for (size_t i = 0; i < params.size(); ++i) loss = loss + (params[i] * coef(g.rank(), i)).sum();
      red.prepare({torch::full({1}, 2.0 * g.rank() + step), torch::full({1}, 1.0)});
      loss.backward();
      const at::Tensor extras = red.finish();
      for (size_t i = 0; i < params.size(); ++i)
        EXPECT_TRUE(torch::equal(params[i].grad(), coef(0, i) + coef(1, i))) << "parameter " << i << " step " << step;
      EXPECT_EQ(extras[0].item<float>(), 2.0f + 2 * step);
      EXPECT_EQ(extras[1].item<float>(), 2.0f);
    }
    const dist::ReducerStats st = red.take_stats();
    EXPECT_EQ(st.steps, 3);
    EXPECT_GT(st.comm_busy_seconds, 0.0);
  });
}

TEST(Reducer, AParameterWithoutGradientCountsAsZero) {
  with_ranks(2, [](dist::Group& g) {
    std::vector<at::Tensor> params{torch::ones({4}).requires_grad_(true), torch::ones({6}).requires_grad_(true)};
    dist::Reducer red(g, params, 16, 16, 1);
    red.prepare({torch::full({1}, 1.0)});
    (params[1] * (g.rank() + 1)).sum().backward();  // params[0] unused on both ranks
    red.finish();
    EXPECT_TRUE(torch::equal(params[0].grad(), torch::zeros({4})));
    EXPECT_TRUE(torch::equal(params[1].grad(), torch::full({6}, 3.0)));
  });
}
