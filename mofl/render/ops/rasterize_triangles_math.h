// Per-triangle, per-pixel arithmetic of the MoflRasterizeTriangles op, shared by the CPU kernel
// (rasterize_triangles.cc) and the CUDA kernel (rasterize_triangles_gpu.cu.cc).
//
// Every kernel and the pure-TF reference (mofl/render/reference_rasterizer.py) evaluate exactly
// these float32 expressions in exactly this order, with no fused multiply-add (g++ builds with
// -ffp-contract=off, nvcc with --fmad=false), so triangle ids and depths agree bit for bit.
//
// Conventions (BUILD_NOTES.md "Rasterizer op"): screen-space vertex (u, v, d): u right and v down
// in pixels, d > 0 the depth along the viewing axis; the centre of pixel (row r, column c) is
// (c + 0.5, r + 0.5).
#ifndef MOFL_RENDER_OPS_RASTERIZE_TRIANGLES_MATH_H_
#define MOFL_RENDER_OPS_RASTERIZE_TRIANGLES_MATH_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define MOFL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MOFL_HOST_DEVICE inline
#endif

namespace mofl {
namespace raster {

// Z-buffer entries pack (depth bits << 32 | triangle id). Depths are positive finite floats, whose
// bit patterns order like the floats, so the smallest key is the nearest triangle and, at equal
// depth, the lowest triangle id: one unsigned min gives a deterministic winner on every device.
constexpr uint64_t kBackgroundKey = 0xFFFFFFFFFFFFFFFFull;
constexpr float kMaxFiniteFloat = 3.402823466e+38f;

struct ScreenTriangle {
  float u[3];
  float v[3];
  float d[3];
  // Twice the signed screen area; < 0 for a triangle that faces the camera (see SetupTriangle).
  float area;
  // 1 / area and 1 / d: per-pixel work multiplies instead of dividing.
  float inverse_area;
  float inverse_d[3];
};

MOFL_HOST_DEVICE bool IsPositiveFinite(float x) { return x > 0.0f && x <= kMaxFiniteFloat; }

MOFL_HOST_DEVICE bool IsNonZeroFinite(float x) {
  return (x > 0.0f && x <= kMaxFiniteFloat) || (x < 0.0f && x >= -kMaxFiniteFloat);
}

// Loads one triangle of one image from `vertices` ([V, 3] rows of (u, v, d)). Returns false when
// the triangle can never cover a pixel: a vertex at d <= 0 or non-finite (no clipping is done),
// a degenerate or non-finite screen area, or a culled back face.
//
// Orientation: triangles are counter-clockwise seen from outside in camera space (x right, y up).
// The screen flips the vertical axis (v = c_y - f_y * y / d), so a camera-facing triangle is
// clockwise on screen, i.e. its `area` below is negative. Culling keeps only area < 0.
MOFL_HOST_DEVICE bool SetupTriangle(const float* vertices, int32_t i0, int32_t i1, int32_t i2,
                                    bool cull_backfaces, ScreenTriangle* tri) {
  const int32_t index[3] = {i0, i1, i2};
  for (int k = 0; k < 3; ++k) {
    tri->u[k] = vertices[3 * index[k] + 0];
    tri->v[k] = vertices[3 * index[k] + 1];
    tri->d[k] = vertices[3 * index[k] + 2];
    if (!IsPositiveFinite(tri->d[k])) return false;
    tri->inverse_d[k] = 1.0f / tri->d[k];
  }
  tri->area = (tri->u[1] - tri->u[0]) * (tri->v[2] - tri->v[0]) -
              (tri->v[1] - tri->v[0]) * (tri->u[2] - tri->u[0]);
  if (!IsNonZeroFinite(tri->area)) return false;
  if (cull_backfaces && !(tri->area < 0.0f)) return false;
  tri->inverse_area = 1.0f / tri->area;
  return IsNonZeroFinite(tri->inverse_area);
}

// Edge functions at the pixel centre (px, py): edge[k] is twice the signed area of the
// sub-triangle opposite vertex k, so edge[k] / area is the screen-space barycentric of vertex k.
// Returns true when the centre lies inside the triangle or on its boundary.
MOFL_HOST_DEVICE bool CoversPixel(const ScreenTriangle& t, float px, float py, float edge[3]) {
  edge[0] = (t.u[2] - t.u[1]) * (py - t.v[1]) - (t.v[2] - t.v[1]) * (px - t.u[1]);
  edge[1] = (t.u[0] - t.u[2]) * (py - t.v[2]) - (t.v[0] - t.v[2]) * (px - t.u[2]);
  edge[2] = (t.u[1] - t.u[0]) * (py - t.v[0]) - (t.v[1] - t.v[0]) * (px - t.u[0]);
  // Non-short-circuit & and a sign flip (exact; -0 >= 0 holds) keep this free of branches.
  const float sign = t.area > 0.0f ? 1.0f : -1.0f;
  return (edge[0] * sign >= 0.0f) & (edge[1] * sign >= 0.0f) & (edge[2] * sign >= 0.0f);
}

// Perspective-correct interpolation at a covered pixel: 1/d is affine in screen space, so with
// screen barycentrics l_k = edge[k] / area, s_k = l_k / d_k, depth = 1 / (s_0 + s_1 + s_2) and the
// perspective-correct barycentrics are b_k = s_k * depth. Evaluated as
// s_k = (edge[k] * (1 / area)) * (1 / d_k). Returns false if depth is not a positive
// finite float (only for extreme inputs); such a pixel is left uncovered.
MOFL_HOST_DEVICE bool Interpolate(const ScreenTriangle& t, const float edge[3], float* depth,
                                  float barycentrics[3]) {
  float s[3];
  for (int k = 0; k < 3; ++k) s[k] = (edge[k] * t.inverse_area) * t.inverse_d[k];
  *depth = 1.0f / ((s[0] + s[1]) + s[2]);
  if (!IsPositiveFinite(*depth)) return false;
  for (int k = 0; k < 3; ++k) barycentrics[k] = s[k] * *depth;
  return true;
}

MOFL_HOST_DEVICE uint64_t PackDepthAndId(float depth, int32_t triangle_id) {
  uint32_t bits;
  memcpy(&bits, &depth, sizeof(bits));
  return (static_cast<uint64_t>(bits) << 32) | static_cast<uint32_t>(triangle_id);
}

MOFL_HOST_DEVICE int32_t UnpackId(uint64_t key) {
  return static_cast<int32_t>(static_cast<uint32_t>(key & 0xFFFFFFFFull));
}

MOFL_HOST_DEVICE float UnpackDepth(uint64_t key) {
  const uint32_t bits = static_cast<uint32_t>(key >> 32);
  float depth;
  memcpy(&depth, &bits, sizeof(depth));
  return depth;
}

// Inclusive range of pixel indices whose centres (index + 0.5) lie in [lo, hi] (widened by 1/1024
// pixel against rounding in the edge functions), clipped to [0, size - 1]. Returns false when
// empty. Only a speed-up: CoversPixel decides coverage.
MOFL_HOST_DEVICE bool PixelRange(float lo, float hi, int size, int* first, int* last) {
  const float slack = 1.0f / 1024.0f;
  const float first_f = ceilf(lo - 0.5f - slack);
  const float last_f = floorf(hi - 0.5f + slack);
  if (!(last_f >= 0.0f) || !(first_f <= static_cast<float>(size - 1)) || !(first_f <= last_f)) {
    return false;
  }
  *first = first_f <= 0.0f ? 0 : static_cast<int>(first_f);
  *last = last_f >= static_cast<float>(size - 1) ? size - 1 : static_cast<int>(last_f);
  return true;
}

MOFL_HOST_DEVICE float Min3(float a, float b, float c) {
  const float ab = a < b ? a : b;
  return ab < c ? ab : c;
}

MOFL_HOST_DEVICE float Max3(float a, float b, float c) {
  const float ab = a > b ? a : b;
  return ab > c ? ab : c;
}

}  // namespace raster
}  // namespace mofl

#endif  // MOFL_RENDER_OPS_RASTERIZE_TRIANGLES_MATH_H_
