// CUDA kernel of MoflRasterizeTriangles. Uses only the CUDA runtime headers: TF 2.19's GPU helper
// headers (gpu_kernel_helper.h) do not compile with nvcc 13. Build with --fmad=false so the
// arithmetic of rasterize_triangles_math.h rounds exactly like the CPU kernel and the reference.
//
// Two passes over a packed 64-bit z-buffer (see rasterize_triangles_math.h):
//   1. one thread per (image, triangle): set up, walk the pixel bounding box, atomicMin the
//      (depth, id) key of every covered pixel; atomicMin makes the winner independent of
//      scheduling, so results are deterministic and equal to the CPU kernel's.
//   2. one thread per pixel: recompute the winner's barycentrics and write the outputs.
#include <cuda_runtime.h>

#include <cstdint>

#include "rasterize_triangles_gpu.h"
#include "rasterize_triangles_math.h"

namespace mofl {
namespace raster {
namespace {

constexpr int kThreadsPerBlock = 256;

__device__ bool LoadTriangle(const float* vertices, const int32_t* triangles, int num_vertices,
                             int t, bool cull_backfaces, ScreenTriangle* tri) {
  const int32_t i0 = triangles[3 * t];
  const int32_t i1 = triangles[3 * t + 1];
  const int32_t i2 = triangles[3 * t + 2];
  if (i0 < 0 || i1 < 0 || i2 < 0 || i0 >= num_vertices || i1 >= num_vertices ||
      i2 >= num_vertices) {
    return false;
  }
  return SetupTriangle(vertices, i0, i1, i2, cull_backfaces, tri);
}

__global__ void DepthTestKernel(const float* vertices, const int32_t* triangles, int batch_size,
                                int num_vertices, int num_triangles, int height, int width,
                                bool cull_backfaces, unsigned long long* zbuffer) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<int64_t>(batch_size) * num_triangles) return;
  const int b = static_cast<int>(index / num_triangles);
  const int t = static_cast<int>(index % num_triangles);
  const float* image_vertices = vertices + static_cast<int64_t>(b) * 3 * num_vertices;
  ScreenTriangle tri;
  if (!LoadTriangle(image_vertices, triangles, num_vertices, t, cull_backfaces, &tri)) return;
  int col_first, col_last, row_first, row_last;
  if (!PixelRange(Min3(tri.u[0], tri.u[1], tri.u[2]), Max3(tri.u[0], tri.u[1], tri.u[2]), width,
                  &col_first, &col_last) ||
      !PixelRange(Min3(tri.v[0], tri.v[1], tri.v[2]), Max3(tri.v[0], tri.v[1], tri.v[2]), height,
                  &row_first, &row_last)) {
    return;
  }
  unsigned long long* image_zbuffer = zbuffer + static_cast<int64_t>(b) * height * width;
  for (int r = row_first; r <= row_last; ++r) {
    const float py = static_cast<float>(r) + 0.5f;
    for (int c = col_first; c <= col_last; ++c) {
      float edge[3];
      float depth;
      float unused[3];
      if (!CoversPixel(tri, static_cast<float>(c) + 0.5f, py, edge) ||
          !Interpolate(tri, edge, &depth, unused)) {
        continue;
      }
      atomicMin(image_zbuffer + static_cast<int64_t>(r) * width + c,
                static_cast<unsigned long long>(PackDepthAndId(depth, t)));
    }
  }
}

__global__ void ResolveKernel(const float* vertices, const int32_t* triangles, int batch_size,
                              int num_vertices, int height, int width, bool cull_backfaces,
                              const unsigned long long* zbuffer, int32_t* triangle_ids,
                              float* depth, float* barycentrics) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t pixels_per_image = static_cast<int64_t>(height) * width;
  if (p >= batch_size * pixels_per_image) return;
  const uint64_t key = zbuffer[p];
  triangle_ids[p] = -1;
  depth[p] = 0.0f;
  barycentrics[3 * p + 0] = barycentrics[3 * p + 1] = barycentrics[3 * p + 2] = 0.0f;
  if (key == kBackgroundKey) return;
  const int b = static_cast<int>(p / pixels_per_image);
  const int r = static_cast<int>((p % pixels_per_image) / width);
  const int c = static_cast<int>(p % width);
  const int32_t t = UnpackId(key);
  ScreenTriangle tri;
  float edge[3];
  float pixel_depth;
  LoadTriangle(vertices + static_cast<int64_t>(b) * 3 * num_vertices, triangles, num_vertices, t,
               cull_backfaces, &tri);
  CoversPixel(tri, static_cast<float>(c) + 0.5f, static_cast<float>(r) + 0.5f, edge);
  Interpolate(tri, edge, &pixel_depth, barycentrics + 3 * p);
  triangle_ids[p] = t;
  depth[p] = UnpackDepth(key);
}

int NumBlocks(int64_t threads) {
  return static_cast<int>((threads + kThreadsPerBlock - 1) / kThreadsPerBlock);
}

}  // namespace

int LaunchRasterizeTrianglesGpu(void* stream, const float* vertices, const int32_t* triangles,
                                int batch_size, int num_vertices, int num_triangles,
                                int image_height, int image_width, bool cull_backfaces,
                                uint64_t* zbuffer, int32_t* triangle_ids, float* depth,
                                float* barycentrics) {
  cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  const int64_t pixels = static_cast<int64_t>(batch_size) * image_height * image_width;
  unsigned long long* keys = reinterpret_cast<unsigned long long*>(zbuffer);
  // All-ones bytes are kBackgroundKey.
  cudaError_t error = cudaMemsetAsync(keys, 0xFF, pixels * sizeof(uint64_t), cuda_stream);
  if (error != cudaSuccess) return static_cast<int>(error);
  const int64_t triangle_threads = static_cast<int64_t>(batch_size) * num_triangles;
  if (triangle_threads > 0) {
    DepthTestKernel<<<NumBlocks(triangle_threads), kThreadsPerBlock, 0, cuda_stream>>>(
        vertices, triangles, batch_size, num_vertices, num_triangles, image_height, image_width,
        cull_backfaces, keys);
    error = cudaGetLastError();
    if (error != cudaSuccess) return static_cast<int>(error);
  }
  if (pixels > 0) {
    ResolveKernel<<<NumBlocks(pixels), kThreadsPerBlock, 0, cuda_stream>>>(
        vertices, triangles, batch_size, num_vertices, image_height, image_width, cull_backfaces,
        keys, triangle_ids, depth, barycentrics);
    error = cudaGetLastError();
  }
  return static_cast<int>(error);
}

const char* RasterizeTrianglesGpuErrorString(int error) {
  return cudaGetErrorString(static_cast<cudaError_t>(error));
}

}  // namespace raster
}  // namespace mofl
