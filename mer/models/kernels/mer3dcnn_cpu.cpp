// CPU kernels for MER3DCNN's training step.
//
// 1. Fused Conv3d(1 -> C, 3x3x3, stride 1) + MaxPool3d(3) + ReLU, the first block.
// Why: the stock path writes the full conv activation (C x 6 x 126 x 126 floats per clip) and
// back-propagates through it, although the pool keeps one value in 27. Here each pooled value
// is computed from its 5x5x5 input patch in registers and only the winner's position is kept,
// so the weight gradient is a gather over the pooled outputs instead of a full conv backward.
// The input needs no gradient (it is the data), so none is computed.
//
// Exactness: the window is scanned in MaxPool3d's order (depth, row, column) with the same
// "strictly greater or NaN" rule, so ties and gradients route exactly as in the stock layers;
// only the conv's summation order differs (1e-15 relative in float64).
//
// 2. Dropout in one pass: the keep/drop draw is the i-th output of SplitMix64 seeded from
// torch's generator, compared with a 32-bit threshold (keep probability exact to 2^-32), so
// the mask has dropout's distribution, depends only on the seed and not on the thread count,
// and costs a hash instead of torch's per-element Bernoulli sampling.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

constexpr int K = 3;       // conv kernel
constexpr int P = 3;       // pool window and stride
constexpr int PATCH = K + P - 1;  // input extent feeding one pooled value
// One register block: a vector register's worth of channels, as a GCC/Clang vector so the
// compiler emits SIMD arithmetic whatever the target. 512-bit where the target has them:
// on AVX-512 that halves the instructions per multiply-add; a 512-bit vector on a
// 256-bit target would be two registers and spill.
#ifdef __AVX512F__
constexpr int REGISTER_BYTES = 64;
#else
constexpr int REGISTER_BYTES = 32;
#endif
constexpr int CHANNEL_MULTIPLE = 16;  // the widest block: 16 floats

template <typename T>
struct Block {
  static constexpr int LANES = REGISTER_BYTES / sizeof(T);
  typedef T vec __attribute__((vector_size(REGISTER_BYTES)));
  typedef decltype(vec{} > vec{}) mask;
  static vec load(const T* p) {
    vec v;
    __builtin_memcpy(&v, p, sizeof(vec));
    return v;
  }
};

// Conv + pool + ReLU for BLOCKS x LANES channels from c0 at one pooled cell. The 3 conv
// outputs of a window row times BLOCKS channel blocks give 3 x BLOCKS independent FMA
// chains, enough to hide the FMA latency (one chain per register would leave the units idle).
template <typename T, int BLOCKS>
inline void pooled_cell(const T (&patch)[PATCH][PATCH][PATCH], const T* weight_t, const T* bias,
                        int64_t C, int64_t c0, T* out, uint8_t* winner) {
  using vec = typename Block<T>::vec;
  using mask = typename Block<T>::mask;
  constexpr int LANES = Block<T>::LANES;
  vec bias_v[BLOCKS], best[BLOCKS];
  mask arg[BLOCKS];
  for (int k = 0; k < BLOCKS; ++k) {
    bias_v[k] = Block<T>::load(bias + c0 + k * LANES);
    arg[k] = mask{};
  }
  for (int a = 0; a < P; ++a) {
    for (int b = 0; b < P; ++b) {
      vec acc[P][BLOCKS];
      for (int q = 0; q < P; ++q)
        for (int k = 0; k < BLOCKS; ++k) acc[q][k] = bias_v[k];
      for (int i = 0; i < K; ++i)
        for (int j = 0; j < K; ++j)
          for (int l = 0; l < K; ++l) {
            const T* w = weight_t + ((i * K + j) * K + l) * C + c0;
            const T x0 = patch[a + i][b + j][l], x1 = patch[a + i][b + j][1 + l], x2 = patch[a + i][b + j][2 + l];
            for (int k = 0; k < BLOCKS; ++k) {
              const vec wv = Block<T>::load(w + k * LANES);
              acc[0][k] += x0 * wv;
              acc[1][k] += x1 * wv;
              acc[2][k] += x2 * wv;
            }
          }
      for (int q = 0; q < P; ++q) {
        const int pos = (a * P + b) * P + q;
        for (int k = 0; k < BLOCKS; ++k) {
          if (pos == 0) {
            best[k] = acc[0][k];
            continue;
          }
          // MaxPool3d's rule: a later value wins only if strictly greater, or NaN
          const mask wins = (acc[q][k] > best[k]) | (acc[q][k] != acc[q][k]);
          best[k] = wins ? acc[q][k] : best[k];
          arg[k] = wins ? mask{} + pos : arg[k];
        }
      }
    }
  }
  for (int k = 0; k < BLOCKS; ++k) {
    const mask positive = (best[k] > vec{}) | (best[k] != best[k]);
    const vec relu = positive ? best[k] : vec{};
    for (int v = 0; v < LANES; ++v) {
      out[c0 + k * LANES + v] = relu[v];
      winner[c0 + k * LANES + v] = static_cast<uint8_t>(arg[k][v]);
    }
  }
}

// out / winner: (N, Dp, Hp, Wp, C), channels last. weight_t: (27, C), bias: (C).
template <typename T>
void forward_kernel(const T* x, const T* weight_t, const T* bias, T* out, uint8_t* winner,
                    int64_t n_clips, int64_t D, int64_t H, int64_t W, int64_t C,
                    int64_t Dp, int64_t Hp, int64_t Wp) {
  // blocks per pass where the channel count allows: 4 x 256-bit or 2 x 512-bit registers
  constexpr int WIDE = 128 / REGISTER_BYTES;
  constexpr int LANES = Block<T>::LANES;
  const int64_t rows = n_clips * Dp * Hp;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    T patch[PATCH][PATCH][PATCH];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / (Dp * Hp), dp = (row / Hp) % Dp, hp = row % Hp;
      const T* clip = x + n * D * H * W;
      for (int64_t wp = 0; wp < Wp; ++wp) {
        for (int i = 0; i < PATCH; ++i)
          for (int j = 0; j < PATCH; ++j)
            for (int l = 0; l < PATCH; ++l)
              patch[i][j][l] = clip[((dp * P + i) * H + hp * P + j) * W + wp * P + l];
        const int64_t cell = ((n * Dp + dp) * Hp + hp) * Wp + wp;
        int64_t c0 = 0;
        for (; c0 + WIDE * LANES <= C; c0 += WIDE * LANES)
          pooled_cell<T, WIDE>(patch, weight_t, bias, C, c0, out + cell * C, winner + cell * C);
        for (; c0 < C; c0 += LANES)
          pooled_cell<T, 1>(patch, weight_t, bias, C, c0, out + cell * C, winner + cell * C);
      }
    }
  });
}

// grad_out, out, winner: (N, Dp, Hp, Wp, C). Per-clip partial sums, added in clip order,
// keep the result independent of the thread count.
template <typename T>
void backward_kernel(const T* x, const T* grad_out, const T* out, const uint8_t* winner,
                     T* grad_weight, T* grad_bias, int64_t n_clips, int64_t D, int64_t H, int64_t W,
                     int64_t C, int64_t Dp, int64_t Hp, int64_t Wp) {
  constexpr int TAPS = K * K * K;
  std::vector<T> partial(n_clips * (TAPS + 1) * C, T(0));
  at::parallel_for(0, n_clips, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      T* gw = partial.data() + n * (TAPS + 1) * C;  // (C, 27): a channel's taps side by side
      T* gb = gw + TAPS * C;
      const T* clip = x + n * D * H * W;
      T patch[PATCH * PATCH * PATCH];
      for (int64_t dp = 0; dp < Dp; ++dp)
        for (int64_t hp = 0; hp < Hp; ++hp)
          for (int64_t wp = 0; wp < Wp; ++wp) {
            for (int i = 0; i < PATCH; ++i)
              for (int j = 0; j < PATCH; ++j)
                for (int l = 0; l < PATCH; ++l)
                  patch[(i * PATCH + j) * PATCH + l] = clip[((dp * P + i) * H + hp * P + j) * W + wp * P + l];
            const int64_t cell = ((n * Dp + dp) * Hp + hp) * Wp + wp;
            for (int64_t c = 0; c < C; ++c) {
              // ReLU passes a gradient only where its output is positive; a select, not a
              // branch, since the sign is a coin flip the predictor would miss half the time
              const T g = out[cell * C + c] > T(0) ? grad_out[cell * C + c] : T(0);
              const int pos = winner[cell * C + c];
              const T* base = patch + ((pos / (P * P)) * PATCH + (pos / P) % P) * PATCH + pos % P;
              T* gwc = gw + c * TAPS;
              for (int i = 0; i < K; ++i)
                for (int j = 0; j < K; ++j)
                  for (int l = 0; l < K; ++l) gwc[(i * K + j) * K + l] += g * base[(i * PATCH + j) * PATCH + l];
              gb[c] += g;
            }
          }
    }
  });
  for (int64_t n = 0; n < n_clips; ++n) {
    const T* src = partial.data() + n * (TAPS + 1) * C;
    for (int64_t k = 0; k < (TAPS + 1) * C; ++k) (k < TAPS * C ? grad_weight[k] : grad_bias[k - TAPS * C]) += src[k];
  }
}

void check_inputs(const torch::Tensor& x, const torch::Tensor& weight) {
  TORCH_CHECK(x.dim() == 5 && x.size(1) == 1, "conv_pool: input must be (N, 1, D, H, W)");
  TORCH_CHECK(weight.dim() == 5 && weight.size(1) == 1 && weight.size(2) == K && weight.size(3) == K &&
                  weight.size(4) == K, "conv_pool: weight must be (C, 1, 3, 3, 3)");
  TORCH_CHECK(weight.size(0) % CHANNEL_MULTIPLE == 0, "conv_pool: channel count must be a multiple of ",
              CHANNEL_MULTIPLE);
  TORCH_CHECK(x.device().is_cpu(), "conv_pool: CPU tensors only");
}

// Returns (out, winner), both (N, C, Dp, Hp, Wp) in channels_last_3d memory.
std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor weight, torch::Tensor bias) {
  check_inputs(x, weight);
  x = x.contiguous();
  const int64_t N = x.size(0), D = x.size(2), H = x.size(3), W = x.size(4), C = weight.size(0);
  const int64_t Dp = (D - K + 1) / P, Hp = (H - K + 1) / P, Wp = (W - K + 1) / P;
  TORCH_CHECK(Dp > 0 && Hp > 0 && Wp > 0, "conv_pool: input too small for conv 3 + pool 3");
  auto weight_t = weight.reshape({C, K * K * K}).t().contiguous();
  auto cl = at::MemoryFormat::ChannelsLast3d;
  auto out = torch::empty({N, C, Dp, Hp, Wp}, x.options().memory_format(cl));
  auto winner = torch::empty({N, C, Dp, Hp, Wp}, x.options().dtype(torch::kUInt8).memory_format(cl));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_pool_forward", [&] {
    forward_kernel<scalar_t>(x.data_ptr<scalar_t>(), weight_t.data_ptr<scalar_t>(),
                             bias.contiguous().data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                             winner.data_ptr<uint8_t>(), N, D, H, W, C, Dp, Hp, Wp);
  });
  return {out, winner};
}

// Returns (grad_weight, grad_bias).
std::vector<torch::Tensor> backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor out,
                                    torch::Tensor winner, torch::Tensor weight) {
  check_inputs(x, weight);
  x = x.contiguous();
  auto cl = at::MemoryFormat::ChannelsLast3d;
  grad_out = grad_out.contiguous(cl);
  out = out.contiguous(cl);
  winner = winner.contiguous(cl);
  const int64_t N = x.size(0), D = x.size(2), H = x.size(3), W = x.size(4), C = weight.size(0);
  const int64_t Dp = out.size(2), Hp = out.size(3), Wp = out.size(4);
  auto grad_weight = torch::zeros({C, K * K * K}, x.options());
  auto grad_bias = torch::zeros({C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_pool_backward", [&] {
    backward_kernel<scalar_t>(x.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                              winner.data_ptr<uint8_t>(), grad_weight.data_ptr<scalar_t>(),
                              grad_bias.data_ptr<scalar_t>(), N, D, H, W, C, Dp, Hp, Wp);
  });
  return {grad_weight.reshape(weight.sizes()), grad_bias};
}

}  // namespace

inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The 64 random bits deciding elements 2 * pair and 2 * pair + 1 (low and high half).
inline uint64_t pair_bits(uint64_t seed, int64_t pair) {
  return splitmix64(seed + static_cast<uint64_t>(pair + 1) * 0x9e3779b97f4a7c15ULL);
}

// An element's mask value from its 32-bit draw: kept with probability limit / 2^32.
template <typename T>
inline T keep_factor(uint64_t draw, uint64_t limit, T scale) {
  return draw < limit ? scale : T(0);
}

// Returns (output, mask); mask holds 0 or 1/(1-p) per element, so the gradient is grad * mask.
// Both share x's memory layout (channels-last stays channels-last).
std::vector<torch::Tensor> dropout(torch::Tensor x, double p, int64_t seed) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1)");
  TORCH_CHECK(x.device().is_cpu(), "dropout: CPU tensors only");
  if (!x.is_non_overlapping_and_dense()) x = x.contiguous();
  auto out = at::empty_like(x);
  auto mask = at::empty_like(x);
  TORCH_CHECK(out.strides() == x.strides() && mask.strides() == x.strides(), "dropout: unexpected layout");
  const int64_t numel = x.numel();
  const double keep = 1.0 - p;
  const uint64_t threshold = static_cast<uint64_t>(std::llround(keep * 4294967296.0));
  const uint64_t base = static_cast<uint64_t>(seed);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mer_dropout", [&] {
    const scalar_t scale = static_cast<scalar_t>(1.0 / keep);
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    scalar_t* m = mask.data_ptr<scalar_t>();
    // One 64-bit draw decides two elements: whole pairs in a branch-free loop, then an odd
    // last element. Each thread works from its own copies of the pointers and constants:
    // read through the shared closure, the threads contend on them and two run slower than one.
    const int64_t pairs = numel / 2;
    const auto draw_pairs = [=](int64_t begin, int64_t end) {
      const scalar_t* __restrict in = src;
      scalar_t* __restrict o = dst;
      scalar_t* __restrict f = m;
      const uint64_t seed_local = base, limit = threshold;
      const scalar_t factor = scale;
      for (int64_t pair = begin; pair < end; ++pair) {
        const uint64_t bits = pair_bits(seed_local, pair);
        const scalar_t lo = keep_factor(bits & 0xffffffffULL, limit, factor);
        const scalar_t hi = keep_factor(bits >> 32, limit, factor);
        f[2 * pair] = lo;
        f[2 * pair + 1] = hi;
        o[2 * pair] = in[2 * pair] * lo;
        o[2 * pair + 1] = in[2 * pair + 1] * hi;
      }
    };
    at::parallel_for(0, pairs, 2048, draw_pairs);
    if (numel % 2) {
      m[numel - 1] = keep_factor(pair_bits(base, pairs) & 0xffffffffULL, threshold, scale);
      dst[numel - 1] = src[numel - 1] * m[numel - 1];
    }
  });
  return {out, mask};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv_pool_forward", &forward, "fused conv3d(3) + maxpool3d(3) + relu");
  m.def("conv_pool_backward", &backward, "weight and bias gradients of the fused block");
  m.def("dropout", &dropout, "dropout from a seeded counter-based generator");
  m.attr("channel_multiple") = CHANNEL_MULTIPLE;
}
