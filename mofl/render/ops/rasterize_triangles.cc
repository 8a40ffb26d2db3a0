// MoflRasterizeTriangles: z-buffer rasterization of screen-space triangle meshes (paper §3.3).
//
// Registers the op and its CPU kernel; with -DMOFL_WITH_CUDA also a GPU kernel that forwards to
// rasterize_triangles_gpu.cu.cc. The op is forward-only: gradients reach vertex positions through
// barycentrics recomputed in TF from the triangle ids (mofl/render/rasterize.py).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "rasterize_triangles_math.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#ifdef MOFL_WITH_CUDA
#include "rasterize_triangles_gpu.h"
#include "xla/stream_executor/stream.h"
#endif

namespace mofl {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;
namespace shape_inference = ::tensorflow::shape_inference;

REGISTER_OP("MoflRasterizeTriangles")
    .Input("vertices: float32")
    .Input("triangles: int32")
    .Attr("image_height: int >= 1")
    .Attr("image_width: int >= 1")
    .Attr("cull_backfaces: bool = false")
    .Output("triangle_ids: int32")
    .Output("depth: float32")
    .Output("barycentrics: float32")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle vertices;
      shape_inference::ShapeHandle triangles;
      shape_inference::DimensionHandle unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &vertices));
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(vertices, 2), 3, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &triangles));
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(triangles, 1), 3, &unused));
      int64_t height;
      int64_t width;
      TF_RETURN_IF_ERROR(c->GetAttr("image_height", &height));
      TF_RETURN_IF_ERROR(c->GetAttr("image_width", &width));
      auto batch = c->Dim(vertices, 0);
      c->set_output(0, c->MakeShape({batch, height, width}));
      c->set_output(1, c->MakeShape({batch, height, width}));
      c->set_output(2, c->MakeShape({batch, height, width, 3}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Rasterizes screen-space triangles with a z-buffer (forward only).

vertices: [B, V, 3] per-image vertices (u, v, d): u right and v down in pixels, d > 0 depth.
triangles: [T, 3] vertex indices shared by the batch.
triangle_ids: [B, H, W] id of the nearest triangle whose projection holds the pixel centre
  (c + 0.5, r + 0.5); -1 on background. Equal depths go to the lower id.
depth: [B, H, W] perspective-correct depth d of that point; 0 on background.
barycentrics: [B, H, W, 3] perspective-correct barycentrics; 0 on background.
)doc");

// Validates shapes and attributes common to both kernels; allocates the three outputs.
class RasterizeTrianglesBase : public OpKernel {
 public:
  explicit RasterizeTrianglesBase(OpKernelConstruction* context) : OpKernel(context) {
    int64_t height;
    int64_t width;
    OP_REQUIRES_OK(context, context->GetAttr("image_height", &height));
    OP_REQUIRES_OK(context, context->GetAttr("image_width", &width));
    OP_REQUIRES_OK(context, context->GetAttr("cull_backfaces", &cull_backfaces_));
    OP_REQUIRES(context, height <= (1 << 16) && width <= (1 << 16),
                errors::InvalidArgument("image size too large: ", height, "x", width));
    height_ = static_cast<int>(height);
    width_ = static_cast<int>(width);
  }

 protected:
  // Checks the inputs and allocates the three outputs.
  absl::Status PrepareOutputs(OpKernelContext* context, Tensor** triangle_ids, Tensor** depth,
                              Tensor** barycentrics) {
    const Tensor& vertices = context->input(0);
    const Tensor& triangles = context->input(1);
    if (vertices.dims() != 3 || vertices.dim_size(2) != 3) {
      return errors::InvalidArgument("vertices must be [B, V, 3], got ",
                                     vertices.shape().DebugString());
    }
    if (triangles.dims() != 2 || triangles.dim_size(1) != 3) {
      return errors::InvalidArgument("triangles must be [T, 3], got ",
                                     triangles.shape().DebugString());
    }
    if (vertices.dim_size(1) >= (int64_t{1} << 31) / 3 ||
        triangles.dim_size(0) >= (int64_t{1} << 31) / 3) {
      return errors::InvalidArgument("too many vertices or triangles");
    }
    const int64_t batch = vertices.dim_size(0);
    TF_RETURN_IF_ERROR(
        context->allocate_output(0, TensorShape({batch, height_, width_}), triangle_ids));
    TF_RETURN_IF_ERROR(context->allocate_output(1, TensorShape({batch, height_, width_}), depth));
    return context->allocate_output(2, TensorShape({batch, height_, width_, 3}), barycentrics);
  }

  int height_ = 0;
  int width_ = 0;
  bool cull_backfaces_ = false;
};

// A triangle that passed SetupTriangle, with its clipped pixel bounding box.
struct BinnedTriangle {
  raster::ScreenTriangle tri;
  int32_t id;
  int row_first, row_last, col_first, col_last;
};

// The triangles of one image that can cover a pixel, and for each band of kBandRows rows the
// indices (into `triangles`, in increasing triangle id) of those whose bounding box touches it.
struct BinnedImage {
  std::vector<BinnedTriangle> triangles;
  std::vector<std::vector<int32_t>> band_members;
};

constexpr int kBandRows = 16;

class RasterizeTrianglesCpuOp : public RasterizeTrianglesBase {
 public:
  using RasterizeTrianglesBase::RasterizeTrianglesBase;

  void Compute(OpKernelContext* context) override {
    Tensor* ids_tensor = nullptr;
    Tensor* depth_tensor = nullptr;
    Tensor* bary_tensor = nullptr;
    OP_REQUIRES_OK(context, PrepareOutputs(context, &ids_tensor, &depth_tensor, &bary_tensor));
    const Tensor& vertices_tensor = context->input(0);
    const Tensor& triangles_tensor = context->input(1);
    const int batch = static_cast<int>(vertices_tensor.dim_size(0));
    const int num_vertices = static_cast<int>(vertices_tensor.dim_size(1));
    const int num_triangles = static_cast<int>(triangles_tensor.dim_size(0));
    const int32_t* triangles = triangles_tensor.flat<int32_t>().data();
    for (int k = 0; k < 3 * num_triangles; ++k) {
      OP_REQUIRES(context, triangles[k] >= 0 && triangles[k] < num_vertices,
                  errors::InvalidArgument("triangle ", k / 3, " has vertex index ", triangles[k],
                                          " outside [0, ", num_vertices, ")"));
    }
    if (batch == 0) return;

    const float* vertices = vertices_tensor.flat<float>().data();
    int32_t* ids = ids_tensor->flat<int32_t>().data();
    float* depth = depth_tensor->flat<float>().data();
    float* barycentrics = bary_tensor->flat<float>().data();
    const auto& workers = *context->device()->tensorflow_cpu_worker_threads();

    // Pass 1, one unit per image: set up every triangle once, keep the ones that can cover a
    // pixel and list them (in increasing id order) under every band of rows they touch.
    const int bands = (height_ + kBandRows - 1) / kBandRows;
    std::vector<BinnedImage> binned(batch);
    const int64_t setup_cost = 60 * static_cast<int64_t>(num_triangles);
    ::tensorflow::Shard(workers.num_threads, workers.workers, batch, setup_cost,
                        [&](int64_t first, int64_t last) {
                          for (int64_t b = first; b < last; ++b) {
                            BinTriangles(vertices + b * 3 * num_vertices, triangles,
                                         num_triangles, bands, &binned[b]);
                          }
                        });

    // Pass 2, one unit per band of kBandRows rows of one image: depth test, then resolve.
    const int64_t band_cost = 8 * static_cast<int64_t>(num_triangles) / bands +
                              400 * kBandRows * width_;
    ::tensorflow::Shard(
        workers.num_threads, workers.workers, static_cast<int64_t>(batch) * bands, band_cost,
        [&](int64_t first, int64_t last) {
          std::vector<uint64_t> zbuffer(static_cast<size_t>(kBandRows) * width_);
          for (int64_t unit = first; unit < last; ++unit) {
            const int64_t b = unit / bands;
            const int band = static_cast<int>(unit % bands);
            const int row_first = band * kBandRows;
            const int row_last = std::min(row_first + kBandRows, height_) - 1;
            const int64_t pixel_offset = (b * height_ + row_first) * width_;
            RasterizeBand(binned[b], band, row_first, row_last, zbuffer.data());
            ResolveBand(vertices + b * 3 * num_vertices, triangles, zbuffer.data(), row_first,
                        row_last, ids + pixel_offset, depth + pixel_offset,
                        barycentrics + 3 * pixel_offset);
          }
        });
  }

 private:
  void BinTriangles(const float* vertices, const int32_t* triangles, int num_triangles,
                    int bands, BinnedImage* binned) const {
    binned->triangles.reserve(num_triangles);
    binned->band_members.assign(bands, {});
    for (int32_t t = 0; t < num_triangles; ++t) {
      BinnedTriangle entry;
      if (!raster::SetupTriangle(vertices, triangles[3 * t], triangles[3 * t + 1],
                                 triangles[3 * t + 2], cull_backfaces_, &entry.tri)) {
        continue;
      }
      const raster::ScreenTriangle& tri = entry.tri;
      if (!raster::PixelRange(raster::Min3(tri.u[0], tri.u[1], tri.u[2]),
                              raster::Max3(tri.u[0], tri.u[1], tri.u[2]), width_,
                              &entry.col_first, &entry.col_last) ||
          !raster::PixelRange(raster::Min3(tri.v[0], tri.v[1], tri.v[2]),
                              raster::Max3(tri.v[0], tri.v[1], tri.v[2]), height_,
                              &entry.row_first, &entry.row_last)) {
        continue;
      }
      entry.id = t;
      const int32_t index = static_cast<int32_t>(binned->triangles.size());
      binned->triangles.push_back(entry);
      for (int band = entry.row_first / kBandRows; band <= entry.row_last / kBandRows; ++band) {
        binned->band_members[band].push_back(index);
      }
    }
  }

  // Fills `zbuffer` ([rows of the band, W]) with the packed (depth, id) key of the winner.
  void RasterizeBand(const BinnedImage& binned, int band, int row_first, int row_last,
                     uint64_t* zbuffer) const {
    std::fill(zbuffer, zbuffer + static_cast<size_t>(row_last - row_first + 1) * width_,
              raster::kBackgroundKey);
    for (const int32_t index : binned.band_members[band]) {
      const BinnedTriangle& entry = binned.triangles[index];
      const int r0 = std::max(entry.row_first, row_first);
      const int r1 = std::min(entry.row_last, row_last);
      for (int r = r0; r <= r1; ++r) {
        const float py = static_cast<float>(r) + 0.5f;
        uint64_t* zrow = zbuffer + static_cast<size_t>(r - row_first) * width_;
        for (int c = entry.col_first; c <= entry.col_last; ++c) {
          float edge[3];
          float depth;
          float unused[3];
          if (!raster::CoversPixel(entry.tri, static_cast<float>(c) + 0.5f, py, edge) ||
              !raster::Interpolate(entry.tri, edge, &depth, unused)) {
            continue;
          }
          const uint64_t key = raster::PackDepthAndId(depth, entry.id);
          if (key < zrow[c]) zrow[c] = key;
        }
      }
    }
  }

  // Writes ids, depth and barycentrics of the band's rows, recomputing the winner's barycentrics.
  void ResolveBand(const float* vertices, const int32_t* triangles, const uint64_t* zbuffer,
                   int row_first, int row_last, int32_t* ids, float* depth,
                   float* barycentrics) const {
    for (int r = row_first; r <= row_last; ++r) {
      for (int c = 0; c < width_; ++c) {
        const size_t p = static_cast<size_t>(r - row_first) * width_ + c;
        const uint64_t key = zbuffer[p];
        ids[p] = -1;
        depth[p] = 0.0f;
        barycentrics[3 * p + 0] = barycentrics[3 * p + 1] = barycentrics[3 * p + 2] = 0.0f;
        if (key == raster::kBackgroundKey) continue;
        const int32_t t = raster::UnpackId(key);
        raster::ScreenTriangle tri;
        float edge[3];
        float pixel_depth;
        raster::SetupTriangle(vertices, triangles[3 * t], triangles[3 * t + 1],
                              triangles[3 * t + 2], cull_backfaces_, &tri);
        raster::CoversPixel(tri, static_cast<float>(c) + 0.5f, static_cast<float>(r) + 0.5f,
                            edge);
        raster::Interpolate(tri, edge, &pixel_depth, barycentrics + 3 * p);
        ids[p] = t;
        depth[p] = raster::UnpackDepth(key);
      }
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("MoflRasterizeTriangles").Device(::tensorflow::DEVICE_CPU),
                        RasterizeTrianglesCpuOp);

#ifdef MOFL_WITH_CUDA
class RasterizeTrianglesGpuOp : public RasterizeTrianglesBase {
 public:
  using RasterizeTrianglesBase::RasterizeTrianglesBase;

  void Compute(OpKernelContext* context) override {
    Tensor* ids_tensor = nullptr;
    Tensor* depth_tensor = nullptr;
    Tensor* bary_tensor = nullptr;
    OP_REQUIRES_OK(context, PrepareOutputs(context, &ids_tensor, &depth_tensor, &bary_tensor));
    const Tensor& vertices = context->input(0);
    const Tensor& triangles = context->input(1);
    const int64_t batch = vertices.dim_size(0);
    if (batch == 0) return;
    Tensor zbuffer;
    OP_REQUIRES_OK(context, context->allocate_temp(::tensorflow::DT_UINT64,
                                                   TensorShape({batch, height_, width_}),
                                                   &zbuffer));
    auto* device_context = context->op_device_context();
    OP_REQUIRES(context, device_context != nullptr && device_context->stream() != nullptr,
                errors::Internal("MoflRasterizeTriangles: no GPU stream"));
    void* stream = device_context->stream()->platform_specific_handle().stream;
    const int error = raster::LaunchRasterizeTrianglesGpu(
        stream, vertices.flat<float>().data(), triangles.flat<int32_t>().data(),
        static_cast<int>(batch), static_cast<int>(vertices.dim_size(1)),
        static_cast<int>(triangles.dim_size(0)), height_, width_, cull_backfaces_,
        zbuffer.flat<uint64_t>().data(), ids_tensor->flat<int32_t>().data(),
        depth_tensor->flat<float>().data(), bary_tensor->flat<float>().data());
    OP_REQUIRES(context, error == 0,
                errors::Internal("MoflRasterizeTriangles CUDA launch failed: ",
                                 raster::RasterizeTrianglesGpuErrorString(error)));
  }
};

REGISTER_KERNEL_BUILDER(Name("MoflRasterizeTriangles").Device(::tensorflow::DEVICE_GPU),
                        RasterizeTrianglesGpuOp);
#endif  // MOFL_WITH_CUDA

}  // namespace
}  // namespace mofl
