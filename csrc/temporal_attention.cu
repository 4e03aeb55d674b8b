// Temporal attention, one warp per sequence: o = softmax(q k^T / sqrt(D)) v over T frames.
//
// q, k, v: (B, F, S, H, D) bf16 read through element strides (views of a fused qkv output need
// no copy); o written through its strides. T = F frames and D are compile-time (-DTA_T, -DTA_D),
// so the T x T scores of a query row live in registers (float s[TA_T]).
// Requirements (checked by the Python wrapper): D % 8 == 0, every stride but D's a multiple of
// 8 elements, base pointers 16-byte aligned, T <= 64, D <= 128.
//
// Per warp: k and v are staged in shared memory as fp32 (coalesced 16-byte loads), q as bf16 in
// rows padded by 16 bytes (no bank conflicts when each lane reads its own row). LPR lanes share a
// query row (T <= 8: 4, T <= 16: 2, else 1), each summing over every LPR-th 8-wide chunk of D,
// combined with shuffles. The softmax is exact (single pass) with fp32 accumulation; o rows go
// back through the q buffer and out with coalesced 16-byte stores.
// Cost: reads q, k, v and writes o once: 8*N*T*D bytes; 4*N*T*T*D FLOPs (N = B*S*H).

#ifndef TA_T
#define TA_T 16
#endif
#ifndef TA_D
#define TA_D 64
#endif
#if TA_D % 8 != 0 || TA_D > 128 || TA_T > 64 || TA_T < 1
#error "temporal_attention.cu needs TA_D % 8 == 0, TA_D <= 128 and 1 <= TA_T <= 64"
#endif

#define CHUNKS (TA_D / 8)
#define LPR (TA_T <= 8 ? 4 : (TA_T <= 16 ? 2 : 1))
#define ROWS (32 / LPR)
#define PASSES ((TA_T + ROWS - 1) / ROWS)
#define QSTRIDE (TA_D + 8)
#define WARP_SMEM_BYTES (2 * TA_T * TA_D * 4 + TA_T * QSTRIDE * 2)

typedef unsigned short bf16;
typedef long long i64;

__device__ __forceinline__ float bf16_lo(unsigned int u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(unsigned int u) { return __uint_as_float(u & 0xffff0000u); }

__device__ __forceinline__ unsigned int f32_to_bf16_bits(float f) {  // round to nearest even
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;  // quiet NaN
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

__device__ __forceinline__ unsigned int pack2(float lo, float hi) {
  return f32_to_bf16_bits(lo) | (f32_to_bf16_bits(hi) << 16);
}

__device__ __forceinline__ void unpack8(uint4 u, float* f) {
  f[0] = bf16_lo(u.x); f[1] = bf16_hi(u.x); f[2] = bf16_lo(u.y); f[3] = bf16_hi(u.y);
  f[4] = bf16_lo(u.z); f[5] = bf16_hi(u.z); f[6] = bf16_lo(u.w); f[7] = bf16_hi(u.w);
}

// T rows of D from global (row stride sf elements) into shared memory.
__device__ __forceinline__ void stage_f32(const bf16* src, i64 sf, float* dst, int lane) {
  for (int v = lane; v < TA_T * CHUNKS; v += 32) {
    int t = v / CHUNKS, c = v % CHUNKS;
    float f[8];
    unpack8(*reinterpret_cast<const uint4*>(src + t * sf + c * 8), f);
    float4* d = reinterpret_cast<float4*>(dst + t * TA_D + c * 8);
    d[0] = make_float4(f[0], f[1], f[2], f[3]);
    d[1] = make_float4(f[4], f[5], f[6], f[7]);
  }
}

__device__ __forceinline__ void stage_bf16(const bf16* src, i64 sf, bf16* dst, int lane) {
  for (int v = lane; v < TA_T * CHUNKS; v += 32) {
    int t = v / CHUNKS, c = v % CHUNKS;
    *reinterpret_cast<uint4*>(dst + t * QSTRIDE + c * 8) = *reinterpret_cast<const uint4*>(src + t * sf + c * 8);
  }
}

__device__ __forceinline__ float dot8(const float* q, const float* k) {
  float4 a = reinterpret_cast<const float4*>(k)[0], b = reinterpret_cast<const float4*>(k)[1];
  return q[0] * a.x + q[1] * a.y + q[2] * a.z + q[3] * a.w + q[4] * b.x + q[5] * b.y + q[6] * b.z + q[7] * b.w;
}

// Scores of query row `row` against all keys, reduced over the LPR lanes of the row.
__device__ __forceinline__ void row_scores(const bf16* qs, const float* ks, int row, int sub, float* s) {
#pragma unroll
  for (int j = 0; j < TA_T; ++j) s[j] = 0.f;
  for (int c = sub; c < CHUNKS; c += LPR) {
    float q[8];
    unpack8(*reinterpret_cast<const uint4*>(qs + row * QSTRIDE + c * 8), q);
#pragma unroll
    for (int j = 0; j < TA_T; ++j) s[j] += dot8(q, ks + j * TA_D + c * 8);
  }
#pragma unroll
  for (int j = 0; j < TA_T; ++j) {
#pragma unroll
    for (int off = LPR / 2; off > 0; off /= 2) s[j] += __shfl_xor_sync(0xffffffffu, s[j], off);
  }
}

// In-register softmax of s (scaled by log2(e)/sqrt(D)); returns 1 / sum.
__device__ __forceinline__ float softmax_inplace(float* s, float scale_log2) {
  float m = __int_as_float(0xff800000);  // -inf
#pragma unroll
  for (int j = 0; j < TA_T; ++j) { s[j] *= scale_log2; m = fmaxf(m, s[j]); }
  float l = 0.f;
#pragma unroll
  for (int j = 0; j < TA_T; ++j) { s[j] = exp2f(s[j] - m); l += s[j]; }
  return 1.f / l;
}

// o[row] = sum_j p_j v_j, written as bf16 over the (already consumed) q row.
__device__ __forceinline__ void row_output(const float* s, float inv, const float* vs, bf16* qs, int row, int sub,
                                           bool valid) {
  for (int c = sub; c < CHUNKS; c += LPR) {
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int j = 0; j < TA_T; ++j) {
      const float4* v = reinterpret_cast<const float4*>(vs + j * TA_D + c * 8);
      float4 a = v[0], b = v[1];
      acc[0] += s[j] * a.x; acc[1] += s[j] * a.y; acc[2] += s[j] * a.z; acc[3] += s[j] * a.w;
      acc[4] += s[j] * b.x; acc[5] += s[j] * b.y; acc[6] += s[j] * b.z; acc[7] += s[j] * b.w;
    }
    if (valid) {
      uint4 o = make_uint4(pack2(acc[0] * inv, acc[1] * inv), pack2(acc[2] * inv, acc[3] * inv),
                           pack2(acc[4] * inv, acc[5] * inv), pack2(acc[6] * inv, acc[7] * inv));
      *reinterpret_cast<uint4*>(qs + row * QSTRIDE + c * 8) = o;
    }
  }
}

extern "C" __global__ void temporal_attention_bf16(
    const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v, bf16* __restrict__ o,
    int n_seq, int S, int H,
    i64 sq_b, i64 sq_f, i64 sq_s, i64 sq_h, i64 sk_b, i64 sk_f, i64 sk_s, i64 sk_h,
    i64 sv_b, i64 sv_f, i64 sv_s, i64 sv_h, i64 so_b, i64 so_f, i64 so_s, i64 so_h,
    float scale_log2) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const i64 seq = (i64)blockIdx.x * (blockDim.x >> 5) + warp;
  if (seq >= n_seq) return;  // whole warps only: shuffles below stay full-warp
  const i64 h = seq % H, s_ = (seq / H) % S, b = seq / ((i64)H * S);
  float* ks = reinterpret_cast<float*>(smem + (size_t)warp * WARP_SMEM_BYTES);
  float* vs = ks + TA_T * TA_D;
  bf16* qs = reinterpret_cast<bf16*>(vs + TA_T * TA_D);
  stage_f32(k + b * sk_b + s_ * sk_s + h * sk_h, sk_f, ks, lane);
  stage_f32(v + b * sv_b + s_ * sv_s + h * sv_h, sv_f, vs, lane);
  stage_bf16(q + b * sq_b + s_ * sq_s + h * sq_h, sq_f, qs, lane);
  __syncwarp();
  const int sub = lane % LPR;
#pragma unroll
  for (int pass = 0; pass < PASSES; ++pass) {
    const int i = pass * ROWS + lane / LPR;
    const bool valid = i < TA_T;
    const int row = valid ? i : TA_T - 1;  // idle lanes shadow the last row, never write
    float s[TA_T];
    row_scores(qs, ks, row, sub, s);
    __syncwarp();  // every read of this pass's q rows is done before o overwrites them
    const float inv = softmax_inplace(s, scale_log2);
    row_output(s, inv, vs, qs, row, sub, valid);
  }
  __syncwarp();
  bf16* dst = o + b * so_b + s_ * so_s + h * so_h;
  for (int u = lane; u < TA_T * CHUNKS; u += 32) {
    int t = u / CHUNKS, c = u % CHUNKS;
    *reinterpret_cast<uint4*>(dst + t * so_f + c * 8) = *reinterpret_cast<const uint4*>(qs + t * QSTRIDE + c * 8);
  }
}
