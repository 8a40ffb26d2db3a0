// Host-side entry point of the CUDA kernel of MoflRasterizeTriangles
// (rasterize_triangles_gpu.cu.cc).
// Kept free of TensorFlow and CUDA headers so both g++ (the op library) and nvcc can include it.
#ifndef MOFL_RENDER_OPS_RASTERIZE_TRIANGLES_GPU_H_
#define MOFL_RENDER_OPS_RASTERIZE_TRIANGLES_GPU_H_

#include <cstdint>

namespace mofl {
namespace raster {

// Rasterizes a batch on `stream` (a cudaStream_t). All pointers are device memory:
// vertices [B, V, 3], triangles [T, 3], zbuffer scratch [B, H, W], triangle_ids [B, H, W],
// depth [B, H, W], barycentrics [B, H, W, 3]. Triangles with an out-of-range vertex index are
// skipped (the CPU kernel reports them as an error instead). Returns 0 on success, otherwise a
// CUDA error code whose text `RasterizeTrianglesGpuErrorString` gives.
int LaunchRasterizeTrianglesGpu(void* stream, const float* vertices, const int32_t* triangles,
                                int batch_size, int num_vertices, int num_triangles,
                                int image_height, int image_width, bool cull_backfaces,
                                uint64_t* zbuffer, int32_t* triangle_ids, float* depth,
                                float* barycentrics);

const char* RasterizeTrianglesGpuErrorString(int error);

}  // namespace raster
}  // namespace mofl

#endif  // MOFL_RENDER_OPS_RASTERIZE_TRIANGLES_GPU_H_
