// domrand CUDA kernels: fused bias/activation, FIR resampling (upfirdn2d), fused noise injection
// and StyleGAN2 demodulation coefficients.
//
// STATUS: checked against the reference through a CPU emulation build in the test suite
// (tests/test_cuda_kernels.py) and on a GPU (H200, CUDA 13.0: pytest -m gpu passed). See docs/cuda.md.
//
// Written for domrand (Apache-2.0). Design rules that keep these kernels simple to check:
//   * one thread per output element and a grid-stride loop, so any grid size is correct and the
//     CPU emulation (one "thread", one "block") runs exactly the same loop body;
//   * no shared memory, no atomics, no warp intrinsics: no thread reads what another thread writes;
//   * all arithmetic in float32, loads/stores in the tensor's type (float or half);
//   * 64-bit element indices.
// Reductions that a backward pass needs (bias and noise-strength gradients, weight and style
// gradients of the demodulation coefficients) are left to PyTorch, which does them well.
//
// Every exported kernel is `extern "C"` with a dtype suffix (_f32, _f16) so the host code can find
// it by name; launch.py holds the matching argument signatures.

#ifdef DOMRAND_CPU_EMULATION
// ---- CPU emulation shim: the same source compiled as plain C++ (g++), one thread of one block.
#include <math.h>
#include <stdint.h>
struct dr_dim3 { unsigned int x, y, z; };
static const dr_dim3 threadIdx = {0, 0, 0};
static const dr_dim3 blockIdx = {0, 0, 0};
static const dr_dim3 blockDim = {1, 1, 1};
static const dr_dim3 gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
typedef _Float16 dr_half;
static inline float dr_rsqrtf(float v) { return 1.0f / sqrtf(v); }
static inline float dr_load(const float v) { return v; }
static inline float dr_load(const dr_half v) { return (float)v; }
static inline void dr_store(float* p, float v) { *p = v; }
static inline void dr_store(dr_half* p, float v) { *p = (dr_half)v; }
#else
#include <cuda_fp16.h>
#include <stdint.h>
typedef __half dr_half;
__device__ __forceinline__ float dr_rsqrtf(float v) { return rsqrtf(v); }
__device__ __forceinline__ float dr_load(const float v) { return v; }
__device__ __forceinline__ float dr_load(const dr_half v) { return __half2float(v); }
__device__ __forceinline__ void dr_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void dr_store(dr_half* p, float v) { *p = __float2half_rn(v); }
#endif

#define DR_GRID_LOOP(i, n)                                                                  \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n);     \
         i += (int64_t)blockDim.x * gridDim.x)

// ------------------------------------------------------------------------------------------------
// Activations. Codes must match launch.ACT_CODES.

#define DR_ACT_LINEAR 0
#define DR_ACT_RELU 1
#define DR_ACT_LRELU 2
#define DR_ACT_TANH 3
#define DR_ACT_SIGMOID 4
#define DR_ACT_ELU 5
#define DR_ACT_SELU 6
#define DR_ACT_SOFTPLUS 7
#define DR_ACT_SWISH 8

#define DR_SELU_ALPHA 1.6732632423543772f
#define DR_SELU_SCALE 1.0507009873554805f

__device__ __forceinline__ float dr_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// act(v); alpha is the lrelu slope.
__device__ __forceinline__ float dr_act(int act, float v, float alpha) {
    switch (act) {
        case DR_ACT_RELU: return v > 0.0f ? v : 0.0f;
        case DR_ACT_LRELU: return v > 0.0f ? v : v * alpha;
        case DR_ACT_TANH: return tanhf(v);
        case DR_ACT_SIGMOID: return dr_sigmoid(v);
        case DR_ACT_ELU: return v > 0.0f ? v : expm1f(v);
        case DR_ACT_SELU: return DR_SELU_SCALE * (v > 0.0f ? v : DR_SELU_ALPHA * expm1f(v));
        case DR_ACT_SOFTPLUS: return v > 20.0f ? v : log1pf(expf(v));  // torch: beta 1, threshold 20
        case DR_ACT_SWISH: return v * dr_sigmoid(v);
        default: return v;
    }
}

// d act(v) / dv, with PyTorch's conventions at the kinks (relu'(0) = 0, lrelu'(0) = alpha).
__device__ __forceinline__ float dr_act_grad(int act, float v, float alpha) {
    switch (act) {
        case DR_ACT_RELU: return v > 0.0f ? 1.0f : 0.0f;
        case DR_ACT_LRELU: return v > 0.0f ? 1.0f : alpha;
        case DR_ACT_TANH: { float t = tanhf(v); return 1.0f - t * t; }
        case DR_ACT_SIGMOID: { float s = dr_sigmoid(v); return s * (1.0f - s); }
        case DR_ACT_ELU: return v > 0.0f ? 1.0f : expf(v);
        case DR_ACT_SELU: return v > 0.0f ? DR_SELU_SCALE : DR_SELU_SCALE * DR_SELU_ALPHA * expf(v);
        case DR_ACT_SOFTPLUS: return v > 20.0f ? 1.0f : dr_sigmoid(v);
        case DR_ACT_SWISH: { float s = dr_sigmoid(v); return s + v * s * (1.0f - s); }
        default: return 1.0f;
    }
}

// clamp(act(v) * gain, -clamp, clamp); clamp < 0 means no clamping.
__device__ __forceinline__ float dr_act_out(int act, float v, float alpha, float gain, float clamp) {
    float y = dr_act(act, v, alpha) * gain;
    if (clamp >= 0.0f) y = fminf(fmaxf(y, -clamp), clamp);
    return y;
}

// d/dv of dr_act_out times dy. The clamp passes the gradient where -clamp <= act(v)*gain <= clamp
// (inclusive, as torch.clamp does).
__device__ __forceinline__ float dr_act_out_grad(int act, float v, float alpha, float gain, float clamp, float dy) {
    if (clamp >= 0.0f) {
        float y = dr_act(act, v, alpha) * gain;
        if (!(y >= -clamp && y <= clamp)) return 0.0f;
    }
    return dy * gain * dr_act_grad(act, v, alpha);
}

// ------------------------------------------------------------------------------------------------
// bias_act: y = clamp(act(x + b[c]) * gain). x is contiguous with `n` elements; the channel of
// element i is (i / inner) % channels. b may be null (no bias).

template <typename T>
__device__ __forceinline__ void bias_act_fwd_body(const T* __restrict__ x, const T* __restrict__ b, T* __restrict__ y,
                                                  int64_t n, int64_t channels, int64_t inner, int act,
                                                  float alpha, float gain, float clamp) {
    DR_GRID_LOOP(i, n) {
        float v = dr_load(x[i]);
        if (b) v += dr_load(b[(i / inner) % channels]);
        dr_store(&y[i], dr_act_out(act, v, alpha, gain, clamp));
    }
}

// dx = dy * d y / d x, recomputing the pre-activation from x and b. db is dx summed by the caller.
template <typename T>
__device__ __forceinline__ void bias_act_bwd_body(const T* __restrict__ dy, const T* __restrict__ x,
                                                  const T* __restrict__ b, T* __restrict__ dx, int64_t n,
                                                  int64_t channels, int64_t inner, int act, float alpha,
                                                  float gain, float clamp) {
    DR_GRID_LOOP(i, n) {
        float v = dr_load(x[i]);
        if (b) v += dr_load(b[(i / inner) % channels]);
        dr_store(&dx[i], dr_act_out_grad(act, v, alpha, gain, clamp, dr_load(dy[i])));
    }
}

// ------------------------------------------------------------------------------------------------
// noise_bias_act for synthesis layers: y = clamp(act(x + noise * strength + b[c]) * gain).
// x: [N, C, HW] contiguous; noise: [N or 1, 1, HW] contiguous (noise_batch_stride = HW or 0) or
// null; strength: one float32 on the device (read there, so no host synchronization); b may be null.

template <typename T>
__device__ __forceinline__ float noise_pre(const T* __restrict__ x, const T* __restrict__ noise,
                                           const float* __restrict__ strength, const T* __restrict__ b,
                                           int64_t i, int64_t channels, int64_t hw, int64_t noise_batch_stride) {
    float v = dr_load(x[i]);
    int64_t p = i % hw;
    int64_t nc = i / hw;
    if (noise) v += dr_load(noise[(nc / channels) * noise_batch_stride + p]) * strength[0];
    if (b) v += dr_load(b[nc % channels]);
    return v;
}

template <typename T>
__device__ __forceinline__ void noise_bias_act_fwd_body(const T* __restrict__ x, const T* __restrict__ noise,
                                                        const float* __restrict__ strength,
                                                        const T* __restrict__ b, T* __restrict__ y, int64_t n,
                                                        int64_t channels, int64_t hw, int64_t noise_batch_stride,
                                                        int act, float alpha, float gain, float clamp) {
    DR_GRID_LOOP(i, n) {
        float v = noise_pre(x, noise, strength, b, i, channels, hw, noise_batch_stride);
        dr_store(&y[i], dr_act_out(act, v, alpha, gain, clamp));
    }
}

// dz = dy * d y / d (pre-activation). dx = dz; db, dnoise and dstrength are reductions of dz that
// the caller does with PyTorch.
template <typename T>
__device__ __forceinline__ void noise_bias_act_bwd_body(const T* __restrict__ dy, const T* __restrict__ x,
                                                        const T* __restrict__ noise,
                                                        const float* __restrict__ strength,
                                                        const T* __restrict__ b, T* __restrict__ dz, int64_t n,
                                                        int64_t channels, int64_t hw, int64_t noise_batch_stride,
                                                        int act, float alpha, float gain, float clamp) {
    DR_GRID_LOOP(i, n) {
        float v = noise_pre(x, noise, strength, b, i, channels, hw, noise_batch_stride);
        dr_store(&dz[i], dr_act_out_grad(act, v, alpha, gain, clamp, dr_load(dy[i])));
    }
}

// ------------------------------------------------------------------------------------------------
// upfirdn2d: zero-insertion upsampling by (upx, upy), padding (px0, py0 at the start; the end
// padding is implied by the output size, negative values crop), correlation with the 2-D float32
// filter g [fh, fw] (the host flips it for a true convolution and folds in the gain), then keeping
// every (downx, downy)-th sample. x: [NC, H, W], y: [NC, OH, OW], both contiguous.
//
// Output (oy, ox) reads the upsampled, padded signal at rows oy*downy + ty (ty < fh). Row r of that
// signal is row (r - py0) of the upsampled image, which holds x row (r - py0) / upy when that is
// a non-negative multiple of upy below H*upy, and zero otherwise.

template <typename T>
__device__ __forceinline__ void upfirdn2d_body(const T* __restrict__ x, const float* __restrict__ g, T* __restrict__ y,
                                               int64_t nc, int h, int w, int oh, int ow, int upx, int upy,
                                               int downx, int downy, int px0, int py0, int fw, int fh) {
    const int64_t total = nc * (int64_t)oh * ow;
    DR_GRID_LOOP(i, total) {
        const int ox = (int)(i % ow);
        const int oy = (int)((i / ow) % oh);
        const int64_t plane = i / ((int64_t)ow * oh);
        const T* xp = x + plane * (int64_t)h * w;
        const int ry0 = oy * downy - py0;  // upsampled-image row under tap ty = 0
        const int rx0 = ox * downx - px0;
        float acc = 0.0f;
        for (int ty = 0; ty < fh; ++ty) {
            const int ry = ry0 + ty;
            if (ry < 0 || ry % upy != 0) continue;
            const int sy = ry / upy;
            if (sy >= h) break;
            for (int tx = 0; tx < fw; ++tx) {
                const int rx = rx0 + tx;
                if (rx < 0 || rx % upx != 0) continue;
                const int sx = rx / upx;
                if (sx >= w) break;
                acc += dr_load(xp[(int64_t)sy * w + sx]) * g[ty * fw + tx];
            }
        }
        dr_store(&y[i], acc);
    }
}

// ------------------------------------------------------------------------------------------------
// Demodulation coefficients: d[n, o] = rsqrt(sum_i s[n, i]^2 * wsq[o, i] + eps) with
// wsq[o, i] = sum_k w[o, i, k]^2 (k runs over the kh*kw taps). Two passes: wsq (float32), then d.

template <typename T>
__device__ __forceinline__ void weight_sq_body(const T* __restrict__ w, float* __restrict__ wsq, int64_t oi, int k) {
    DR_GRID_LOOP(j, oi) {
        float acc = 0.0f;
        const T* wp = w + j * k;
        for (int t = 0; t < k; ++t) {
            const float v = dr_load(wp[t]);
            acc += v * v;
        }
        wsq[j] = acc;
    }
}

template <typename T>
__device__ __forceinline__ void demod_coefs_body(const T* __restrict__ s, const float* __restrict__ wsq,
                                                 T* __restrict__ d, int64_t batch, int64_t outc, int64_t inc,
                                                 float eps) {
    DR_GRID_LOOP(j, batch * outc) {
        const int64_t n = j / outc;
        const int64_t o = j % outc;
        const T* sp = s + n * inc;
        const float* wp = wsq + o * inc;
        float acc = 0.0f;
        for (int64_t c = 0; c < inc; ++c) {
            const float v = dr_load(sp[c]);
            acc += v * v * wp[c];
        }
        dr_store(&d[j], dr_rsqrtf(acc + eps));
    }
}

// ------------------------------------------------------------------------------------------------
// Exported entry points (names looked up by launch.py; keep the argument lists in sync with
// launch.SIGNATURES).

#define DR_EXPORT_ALL(SUFFIX, T)                                                                       \
    extern "C" __global__ void bias_act_fwd_##SUFFIX(const T* x, const T* b, T* y, int64_t n,           \
                                                     int64_t channels, int64_t inner, int act,          \
                                                     float alpha, float gain, float clamp) {            \
        bias_act_fwd_body<T>(x, b, y, n, channels, inner, act, alpha, gain, clamp);                    \
    }                                                                                                  \
    extern "C" __global__ void bias_act_bwd_##SUFFIX(const T* dy, const T* x, const T* b, T* dx,        \
                                                     int64_t n, int64_t channels, int64_t inner,        \
                                                     int act, float alpha, float gain, float clamp) {   \
        bias_act_bwd_body<T>(dy, x, b, dx, n, channels, inner, act, alpha, gain, clamp);               \
    }                                                                                                  \
    extern "C" __global__ void noise_bias_act_fwd_##SUFFIX(                                            \
        const T* x, const T* noise, const float* strength, const T* b, T* y, int64_t n,                 \
        int64_t channels, int64_t hw, int64_t noise_batch_stride, int act, float alpha, float gain,     \
        float clamp) {                                                                                 \
        noise_bias_act_fwd_body<T>(x, noise, strength, b, y, n, channels, hw, noise_batch_stride, act,  \
                                   alpha, gain, clamp);                                                \
    }                                                                                                  \
    extern "C" __global__ void noise_bias_act_bwd_##SUFFIX(                                            \
        const T* dy, const T* x, const T* noise, const float* strength, const T* b, T* dz, int64_t n,   \
        int64_t channels, int64_t hw, int64_t noise_batch_stride, int act, float alpha, float gain,     \
        float clamp) {                                                                                 \
        noise_bias_act_bwd_body<T>(dy, x, noise, strength, b, dz, n, channels, hw, noise_batch_stride,  \
                                   act, alpha, gain, clamp);                                           \
    }                                                                                                  \
    extern "C" __global__ void upfirdn2d_##SUFFIX(const T* x, const float* g, T* y, int64_t nc, int h,  \
                                                  int w, int oh, int ow, int upx, int upy, int downx,   \
                                                  int downy, int px0, int py0, int fw, int fh) {        \
        upfirdn2d_body<T>(x, g, y, nc, h, w, oh, ow, upx, upy, downx, downy, px0, py0, fw, fh);        \
    }                                                                                                  \
    extern "C" __global__ void weight_sq_##SUFFIX(const T* w, float* wsq, int64_t oi, int k) {          \
        weight_sq_body<T>(w, wsq, oi, k);                                                              \
    }                                                                                                  \
    extern "C" __global__ void demod_coefs_##SUFFIX(const T* s, const float* wsq, T* d, int64_t batch,  \
                                                    int64_t outc, int64_t inc, float eps) {             \
        demod_coefs_body<T>(s, wsq, d, batch, outc, inc, eps);                                         \
    }

DR_EXPORT_ALL(f32, float)
DR_EXPORT_ALL(f16, dr_half)
