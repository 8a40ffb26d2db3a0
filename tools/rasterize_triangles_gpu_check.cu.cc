// Standalone check of the CUDA kernel of MoflRasterizeTriangles; needs no TensorFlow.
//
// Runs LaunchRasterizeTrianglesGpu (rasterize_triangles_gpu.cu.cc) on a fixed set of deterministic
// inputs and compares triangle ids, depth and barycentrics BIT FOR BIT with a single-threaded host
// reference that replays the CPU kernel's algorithm (rasterize_triangles.cc): per image, every
// triangle set up once and binned into bands of 16 rows in increasing id order; per band a packed
// (depth bits << 32 | id) z-buffer updated with a strict `<`, then a resolve pass that recomputes
// the winner's barycentrics; background -1 / 0 / 0. Both sides evaluate the same float32 functions
// of rasterize_triangles_math.h without fused multiply-add (nvcc --fmad=false, host code with
// -ffp-contract=off), so any difference is a bug. Triangles with an out-of-range vertex index are
// skipped by the reference as the GPU kernel does (the CPU op rejects such input instead).
//
// Besides agreeing with the reference, every GPU output must: be written at every pixel (outputs
// are filled with garbage before each launch and the z-buffer scratch with zero keys), be the same
// bits on a second launch, hold -1 / +0 / +0 at background pixels and a valid id with a positive
// finite depth elsewhere, and, where a case says so, cover some pixel and use only ids below a
// limit (the duplicated-triangle case: the lowest id of equal-depth copies must win).
//
// Each case prints one line "PASS|FAIL name  [details]". For the mesh cases the GPU time per launch
// (cudaEvents around 50 launches after 5 warm-ups) and the host reference's time per batch (best
// of 3) are printed, never asserted.
//
// Modes:
//   (none)       every case on the GPU, then the timings.
//   --quick      small cases only and no timings; for runs under compute-sanitizer.
//   --host-only  needs no GPU: cross-checks the host reference against an independent brute-force
//                rasterizer (every usable triangle tested at every pixel, the smallest
//                (depth, id) kept; no bounding boxes, bands or packed keys) on every pixel of the
//                small cases and on an evenly spread sample of the pixels of the mesh cases.
//                Combines with --quick.
//
// Exit status: 0 when every case passes, 1 on any failure, 2 when no CUDA device is found (GPU
// modes only), 64 on a bad command line.
//
// The kernel, the CPU kernel and the headers it names are the op's, in mofl/render/ops/; this
// program lives outside the package, next to the script that builds it. Build and run it with
// tools/check_cuda_rasterizer.sh, which compiles it and the kernel with the op build's nvcc flags
// (mofl/render/ops/build_ops.py) and -I mofl/render/ops:
//   tools/check_cuda_rasterizer.sh [--sanitize] [--quick] [--host-only] [OUTPUT_DIR]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "rasterize_triangles_gpu.h"
#include "rasterize_triangles_math.h"

namespace mofl {
namespace raster {
namespace {

constexpr int kExitPass = 0;
constexpr int kExitFail = 1;
constexpr int kExitNoDevice = 2;
constexpr int kExitUsage = 64;

// Rows per band of the CPU kernel (kBandRows in rasterize_triangles.cc).
constexpr int kBandRows = 16;

// Timing protocol of the mesh cases.
constexpr int kWarmupLaunches = 5;
constexpr int kTimedLaunches = 50;
constexpr int kHostTimingRuns = 3;

// Upper bound on (pixel, triangle) tests of the brute-force rasterizer per case; larger cases are
// checked on an evenly spread sample of pixels.
constexpr int64_t kBruteForceTestsPerCase = 600000000;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// SplitMix64: the same sequence for a seed on every platform and standard library.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  // Uniform in [lo, hi).
  float Uniform(float lo, float hi) {
    const float unit = static_cast<float>(Next() >> 40) * (1.0f / 16777216.0f);
    return lo + (hi - lo) * unit;
  }

  // Uniform in [0, n).
  int Below(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }

  bool Coin() { return (Next() >> 63) != 0; }

 private:
  uint64_t state_;
};

// One input of the op and the extra expectations on its output.
struct RasterCase {
  std::string name;
  int batch_size = 1;
  int num_vertices = 0;
  int image_height = 1;
  int image_width = 1;
  bool cull_backfaces = false;
  std::vector<float> vertices;     // [batch_size, num_vertices, 3] rows of (u, v, d).
  std::vector<int32_t> triangles;  // [num_triangles, 3] vertex indices shared by the batch.
  // The case is vacuous unless some pixel is covered.
  bool expect_coverage = true;
  // When >= 0, every covered pixel's triangle id must be below it.
  int32_t id_limit = -1;
  // Mesh cases: left out by --quick, timed, brute-forced on a pixel sample only.
  bool large = false;

  int num_triangles() const { return static_cast<int>(triangles.size() / 3); }
  int64_t pixels_per_image() const { return static_cast<int64_t>(image_height) * image_width; }
  int64_t num_pixels() const { return batch_size * pixels_per_image(); }
};

// The three outputs of the op for one case.
struct RasterOutput {
  std::vector<int32_t> triangle_ids;  // [B, H, W]
  std::vector<float> depth;           // [B, H, W]
  std::vector<float> barycentrics;    // [B, H, W, 3]

  void Resize(int64_t num_pixels) {
    triangle_ids.assign(num_pixels, -1);
    depth.assign(num_pixels, 0.0f);
    barycentrics.assign(3 * num_pixels, 0.0f);
  }
};

uint32_t FloatBits(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  return bits;
}

// |a - b|, infinite when either is NaN or the two differ in infinity.
double AbsDifference(float a, float b) {
  const double difference = std::fabs(static_cast<double>(a) - static_cast<double>(b));
  return std::isnan(difference) ? std::numeric_limits<double>::infinity() : difference;
}

bool HasValidIndices(const int32_t* corners, int num_vertices) {
  for (int k = 0; k < 3; ++k) {
    if (corners[k] < 0 || corners[k] >= num_vertices) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Host reference: the CPU kernel's algorithm, one thread, triangles with a bad index skipped.
// ---------------------------------------------------------------------------------------------

// A triangle that passed SetupTriangle, with its clipped pixel bounding box.
struct BinnedTriangle {
  ScreenTriangle tri;
  int32_t id;
  int row_first, row_last, col_first, col_last;
};

void RasterizeReference(const RasterCase& input, RasterOutput* output) {
  const int height = input.image_height;
  const int width = input.image_width;
  const int num_vertices = input.num_vertices;
  const int num_triangles = input.num_triangles();
  const int32_t* triangles = input.triangles.data();
  const int bands = (height + kBandRows - 1) / kBandRows;
  output->Resize(input.num_pixels());
  std::vector<uint64_t> zbuffer(static_cast<size_t>(kBandRows) * width);
  std::vector<BinnedTriangle> binned;
  std::vector<std::vector<int32_t>> band_members(bands);
  for (int b = 0; b < input.batch_size; ++b) {
    const float* vertices = input.vertices.data() + static_cast<size_t>(b) * 3 * num_vertices;

    // Pass 1: set up every triangle once; list the usable ones, in increasing id, under every band
    // of rows their bounding box touches.
    binned.clear();
    for (auto& members : band_members) members.clear();
    for (int32_t t = 0; t < num_triangles; ++t) {
      const int32_t* corners = triangles + 3 * t;
      BinnedTriangle entry;
      if (!HasValidIndices(corners, num_vertices) ||
          !SetupTriangle(vertices, corners[0], corners[1], corners[2], input.cull_backfaces,
                         &entry.tri)) {
        continue;
      }
      const ScreenTriangle& tri = entry.tri;
      if (!PixelRange(Min3(tri.u[0], tri.u[1], tri.u[2]), Max3(tri.u[0], tri.u[1], tri.u[2]),
                      width, &entry.col_first, &entry.col_last) ||
          !PixelRange(Min3(tri.v[0], tri.v[1], tri.v[2]), Max3(tri.v[0], tri.v[1], tri.v[2]),
                      height, &entry.row_first, &entry.row_last)) {
        continue;
      }
      entry.id = t;
      const int32_t index = static_cast<int32_t>(binned.size());
      binned.push_back(entry);
      for (int band = entry.row_first / kBandRows; band <= entry.row_last / kBandRows; ++band) {
        band_members[band].push_back(index);
      }
    }

    // Pass 2, band by band: depth test into the band's z-buffer, then resolve.
    for (int band = 0; band < bands; ++band) {
      const int row_first = band * kBandRows;
      const int row_last = std::min(row_first + kBandRows, height) - 1;
      std::fill(zbuffer.begin(), zbuffer.end(), kBackgroundKey);
      for (const int32_t index : band_members[band]) {
        const BinnedTriangle& entry = binned[index];
        for (int r = std::max(entry.row_first, row_first);
             r <= std::min(entry.row_last, row_last); ++r) {
          const float py = static_cast<float>(r) + 0.5f;
          uint64_t* zbuffer_row = zbuffer.data() + static_cast<size_t>(r - row_first) * width;
          for (int c = entry.col_first; c <= entry.col_last; ++c) {
            float edge[3];
            float depth;
            float unused[3];
            if (!CoversPixel(entry.tri, static_cast<float>(c) + 0.5f, py, edge) ||
                !Interpolate(entry.tri, edge, &depth, unused)) {
              continue;
            }
            const uint64_t key = PackDepthAndId(depth, entry.id);
            if (key < zbuffer_row[c]) zbuffer_row[c] = key;
          }
        }
      }
      for (int r = row_first; r <= row_last; ++r) {
        for (int c = 0; c < width; ++c) {
          const uint64_t key = zbuffer[static_cast<size_t>(r - row_first) * width + c];
          if (key == kBackgroundKey) continue;  // Resize wrote the background values.
          const size_t p = (static_cast<size_t>(b) * height + r) * width + c;
          const int32_t t = UnpackId(key);
          const int32_t* corners = triangles + 3 * t;
          ScreenTriangle tri{};  // the winner passed SetupTriangle; {} quiets -Wmaybe-uninitialized
          float edge[3];
          float pixel_depth;
          SetupTriangle(vertices, corners[0], corners[1], corners[2], input.cull_backfaces, &tri);
          CoversPixel(tri, static_cast<float>(c) + 0.5f, static_cast<float>(r) + 0.5f, edge);
          Interpolate(tri, edge, &pixel_depth, &output->barycentrics[3 * p]);
          output->triangle_ids[p] = t;
          output->depth[p] = UnpackDepth(key);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Brute force (--host-only): written independently of the reference to validate it.
// ---------------------------------------------------------------------------------------------

// Evaluates the pixels whose flat index p (over the whole batch) is a multiple of `pixel_stride`;
// marks them in `evaluated`. Every triangle is tested at every such pixel; the smallest depth wins
// and, at equal depth, the smallest id.
void RasterizeBruteForce(const RasterCase& input, int64_t pixel_stride, RasterOutput* output,
                         std::vector<uint8_t>* evaluated) {
  const int num_triangles = input.num_triangles();
  output->Resize(input.num_pixels());
  evaluated->assign(input.num_pixels(), 0);
  std::vector<ScreenTriangle> setups(num_triangles);
  std::vector<uint8_t> usable(num_triangles);
  for (int b = 0; b < input.batch_size; ++b) {
    const float* vertices =
        input.vertices.data() + static_cast<size_t>(b) * 3 * input.num_vertices;
    for (int t = 0; t < num_triangles; ++t) {
      const int32_t* corners = &input.triangles[3 * t];
      usable[t] = HasValidIndices(corners, input.num_vertices) &&
                  SetupTriangle(vertices, corners[0], corners[1], corners[2],
                                input.cull_backfaces, &setups[t]);
    }
    const int64_t image_first = b * input.pixels_per_image();
    const int64_t image_end = image_first + input.pixels_per_image();
    for (int64_t p = (image_first + pixel_stride - 1) / pixel_stride * pixel_stride;
         p < image_end; p += pixel_stride) {
      const int r = static_cast<int>((p - image_first) / input.image_width);
      const int c = static_cast<int>((p - image_first) % input.image_width);
      const float px = static_cast<float>(c) + 0.5f;
      const float py = static_cast<float>(r) + 0.5f;
      int32_t nearest_id = -1;
      float nearest_depth = 0.0f;
      float nearest_barycentrics[3] = {0.0f, 0.0f, 0.0f};
      for (int t = 0; t < num_triangles; ++t) {
        if (!usable[t]) continue;
        float edge[3];
        float depth;
        float barycentrics[3];
        if (!CoversPixel(setups[t], px, py, edge) ||
            !Interpolate(setups[t], edge, &depth, barycentrics)) {
          continue;
        }
        if (nearest_id < 0 || depth < nearest_depth ||
            (depth == nearest_depth && t < nearest_id)) {
          nearest_id = t;
          nearest_depth = depth;
          std::copy(barycentrics, barycentrics + 3, nearest_barycentrics);
        }
      }
      (*evaluated)[p] = 1;
      if (nearest_id < 0) continue;
      output->triangle_ids[p] = nearest_id;
      output->depth[p] = nearest_depth;
      std::copy(nearest_barycentrics, nearest_barycentrics + 3, &output->barycentrics[3 * p]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison and output invariants.
// ---------------------------------------------------------------------------------------------

struct Difference {
  int64_t compared_pixels = 0;
  int64_t mismatched_pixels = 0;
  int64_t id_mismatches = 0;
  int64_t depth_mismatches = 0;
  int64_t barycentric_mismatches = 0;  // pixels with any of the three differing
  double max_depth_difference = 0.0;
  double max_barycentric_difference = 0.0;
  int64_t first_mismatch = -1;  // flat pixel index
};

// Compares bit patterns at every pixel, or only at those marked in `mask` when given.
Difference Compare(const RasterOutput& expected, const RasterOutput& actual,
                   const std::vector<uint8_t>* mask) {
  Difference difference;
  const int64_t num_pixels = static_cast<int64_t>(expected.triangle_ids.size());
  for (int64_t p = 0; p < num_pixels; ++p) {
    if (mask != nullptr && !(*mask)[p]) continue;
    ++difference.compared_pixels;
    const bool id_differs = expected.triangle_ids[p] != actual.triangle_ids[p];
    const bool depth_differs = FloatBits(expected.depth[p]) != FloatBits(actual.depth[p]);
    bool barycentrics_differ = false;
    for (int k = 0; k < 3; ++k) {
      const float e = expected.barycentrics[3 * p + k];
      const float a = actual.barycentrics[3 * p + k];
      if (FloatBits(e) != FloatBits(a)) {
        barycentrics_differ = true;
        difference.max_barycentric_difference =
            std::max(difference.max_barycentric_difference, AbsDifference(e, a));
      }
    }
    if (depth_differs) {
      difference.max_depth_difference = std::max(
          difference.max_depth_difference, AbsDifference(expected.depth[p], actual.depth[p]));
    }
    difference.id_mismatches += id_differs;
    difference.depth_mismatches += depth_differs;
    difference.barycentric_mismatches += barycentrics_differ;
    if (id_differs || depth_differs || barycentrics_differ) {
      if (difference.mismatched_pixels == 0) difference.first_mismatch = p;
      ++difference.mismatched_pixels;
    }
  }
  return difference;
}

std::string Format(const char* format, ...) __attribute__((format(printf, 1, 2)));

std::string Format(const char* format, ...) {
  char buffer[1024];
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(buffer, sizeof(buffer), format, arguments);
  va_end(arguments);
  return buffer;
}

std::string DescribePixel(const RasterOutput& output, int64_t p) {
  const float* barycentrics = &output.barycentrics[3 * p];
  return Format("id %d depth %.9g (0x%08x) barycentrics (%.9g, %.9g, %.9g)",
                output.triangle_ids[p], output.depth[p], FloatBits(output.depth[p]),
                barycentrics[0], barycentrics[1], barycentrics[2]);
}

std::string DescribeDifference(const RasterCase& input, const Difference& difference,
                               const RasterOutput& expected, const char* expected_name,
                               const RasterOutput& actual, const char* actual_name) {
  const int64_t p = difference.first_mismatch;
  const int64_t b = p / input.pixels_per_image();
  const int64_t r = (p % input.pixels_per_image()) / input.image_width;
  const int64_t c = p % input.image_width;
  return Format("%" PRId64 " of %" PRId64 " pixels differ (ids %" PRId64 ", depth %" PRId64
                ", barycentrics %" PRId64 "); max |depth diff| %.3g, max |barycentric diff| "
                "%.3g; first at b=%" PRId64 " r=%" PRId64 " c=%" PRId64 ": %s %s, %s %s",
                difference.mismatched_pixels, difference.compared_pixels,
                difference.id_mismatches, difference.depth_mismatches,
                difference.barycentric_mismatches, difference.max_depth_difference,
                difference.max_barycentric_difference, b, r, c, expected_name,
                DescribePixel(expected, p).c_str(), actual_name,
                DescribePixel(actual, p).c_str());
}

// Checks the op's output contract on its own; returns "" or the first thing wrong. Counts covered
// pixels.
std::string CheckInvariants(const RasterCase& input, const RasterOutput& output,
                            int64_t* covered_pixels) {
  std::string error;
  *covered_pixels = 0;
  for (int64_t p = 0; p < input.num_pixels(); ++p) {
    const int32_t id = output.triangle_ids[p];
    const float* barycentrics = &output.barycentrics[3 * p];
    if (id != -1) ++*covered_pixels;
    if (!error.empty()) continue;
    if (id == -1) {
      if (FloatBits(output.depth[p]) != 0 || FloatBits(barycentrics[0]) != 0 ||
          FloatBits(barycentrics[1]) != 0 || FloatBits(barycentrics[2]) != 0) {
        error = Format("background pixel %" PRId64 " is not -1 / +0 / +0: %s", p,
                       DescribePixel(output, p).c_str());
      }
    } else if (id < 0 || id >= input.num_triangles() ||
               !HasValidIndices(&input.triangles[3 * id], input.num_vertices)) {
      error = Format("pixel %" PRId64 " has id %d, not a usable triangle", p, id);
    } else if (!IsPositiveFinite(output.depth[p])) {
      error = Format("pixel %" PRId64 " has depth %.9g", p, output.depth[p]);
    } else if (input.id_limit >= 0 && id >= input.id_limit) {
      error = Format("pixel %" PRId64 " has id %d; an equal-depth copy with an id below %d "
                     "should have won", p, id, input.id_limit);
    }
  }
  if (error.empty() && input.expect_coverage && *covered_pixels == 0) {
    error = "no pixel covered: vacuous case";
  }
  return error;
}

// ---------------------------------------------------------------------------------------------
// GPU side.
// ---------------------------------------------------------------------------------------------

// Appends "what: CUDA error" to `error` and returns false when `status` is not cudaSuccess.
bool CudaOk(cudaError_t status, const char* what, std::string* error) {
  if (status == cudaSuccess) return true;
  if (!error->empty()) *error += "; ";
  *error += Format("%s: %s (%s)", what, cudaGetErrorName(status), cudaGetErrorString(status));
  return false;
}

// Device copies of one case's inputs, outputs and z-buffer scratch, freed on destruction.
class GpuCase {
 public:
  GpuCase(const RasterCase& input, cudaStream_t stream) : input_(input), stream_(stream) {}
  GpuCase(const GpuCase&) = delete;
  GpuCase& operator=(const GpuCase&) = delete;

  ~GpuCase() {
    cudaFree(vertices_);
    cudaFree(triangles_);
    cudaFree(zbuffer_);
    cudaFree(triangle_ids_);
    cudaFree(depth_);
    cudaFree(barycentrics_);
  }

  // Allocates the buffers (at least one element each: a zero-byte cudaMalloc need not give a
  // usable pointer) and uploads the inputs.
  bool Upload(std::string* error) {
    const size_t pixels = std::max<int64_t>(input_.num_pixels(), 1);
    const size_t vertex_floats = std::max<size_t>(input_.vertices.size(), 1);
    const size_t triangle_ints = std::max<size_t>(input_.triangles.size(), 1);
    return CudaOk(cudaMalloc(&vertices_, vertex_floats * sizeof(float)), "cudaMalloc vertices",
                  error) &&
           CudaOk(cudaMalloc(&triangles_, triangle_ints * sizeof(int32_t)),
                  "cudaMalloc triangles", error) &&
           CudaOk(cudaMalloc(&zbuffer_, pixels * sizeof(uint64_t)), "cudaMalloc zbuffer",
                  error) &&
           CudaOk(cudaMalloc(&triangle_ids_, pixels * sizeof(int32_t)), "cudaMalloc ids",
                  error) &&
           CudaOk(cudaMalloc(&depth_, pixels * sizeof(float)), "cudaMalloc depth", error) &&
           CudaOk(cudaMalloc(&barycentrics_, 3 * pixels * sizeof(float)),
                  "cudaMalloc barycentrics", error) &&
           Copy(vertices_, input_.vertices.data(), input_.vertices.size() * sizeof(float),
                cudaMemcpyHostToDevice, "upload vertices", error) &&
           Copy(triangles_, input_.triangles.data(), input_.triangles.size() * sizeof(int32_t),
                cudaMemcpyHostToDevice, "upload triangles", error);
  }

  // Fills the outputs with the byte `garbage` and the z-buffer with zero keys (a kernel that
  // skipped clearing it would report triangle 0 at depth 0 everywhere), so that a pixel the kernel
  // never writes shows up as a mismatch.
  bool Poison(unsigned char garbage, std::string* error) {
    const int64_t pixels = input_.num_pixels();
    if (pixels == 0) return true;
    return CudaOk(cudaMemsetAsync(zbuffer_, 0, pixels * sizeof(uint64_t), stream_),
                  "memset zbuffer", error) &&
           CudaOk(cudaMemsetAsync(triangle_ids_, garbage, pixels * sizeof(int32_t), stream_),
                  "memset ids", error) &&
           CudaOk(cudaMemsetAsync(depth_, garbage, pixels * sizeof(float), stream_),
                  "memset depth", error) &&
           CudaOk(cudaMemsetAsync(barycentrics_, garbage, 3 * pixels * sizeof(float), stream_),
                  "memset barycentrics", error);
  }

  // Enqueues one rasterization on the stream.
  bool Launch(std::string* error) {
    const int status = LaunchRasterizeTrianglesGpu(
        stream_, vertices_, triangles_, input_.batch_size, input_.num_vertices,
        input_.num_triangles(), input_.image_height, input_.image_width, input_.cull_backfaces,
        zbuffer_, triangle_ids_, depth_, barycentrics_);
    if (status == 0) return true;
    if (!error->empty()) *error += "; ";
    *error += Format("LaunchRasterizeTrianglesGpu returned %d (%s)", status,
                     RasterizeTrianglesGpuErrorString(status));
    return false;
  }

  // Waits for the stream and copies the outputs back.
  bool Download(RasterOutput* output, std::string* error) {
    const int64_t pixels = input_.num_pixels();
    output->Resize(pixels);
    return CudaOk(cudaStreamSynchronize(stream_), "kernel execution", error) &&
           Copy(output->triangle_ids.data(), triangle_ids_, pixels * sizeof(int32_t),
                cudaMemcpyDeviceToHost, "download ids", error) &&
           Copy(output->depth.data(), depth_, pixels * sizeof(float), cudaMemcpyDeviceToHost,
                "download depth", error) &&
           Copy(output->barycentrics.data(), barycentrics_, 3 * pixels * sizeof(float),
                cudaMemcpyDeviceToHost, "download barycentrics", error);
  }

  // Milliseconds per launch over kTimedLaunches launches after kWarmupLaunches, or a negative
  // value on error.
  double MillisecondsPerLaunch(std::string* error) {
    for (int i = 0; i < kWarmupLaunches; ++i) {
      if (!Launch(error)) return -1.0;
    }
    cudaEvent_t start = nullptr;
    cudaEvent_t stop = nullptr;
    float milliseconds = -1.0f;
    bool ok = CudaOk(cudaEventCreate(&start), "cudaEventCreate", error) &&
              CudaOk(cudaEventCreate(&stop), "cudaEventCreate", error) &&
              CudaOk(cudaEventRecord(start, stream_), "cudaEventRecord", error);
    for (int i = 0; ok && i < kTimedLaunches; ++i) ok = Launch(error);
    ok = ok && CudaOk(cudaEventRecord(stop, stream_), "cudaEventRecord", error) &&
         CudaOk(cudaEventSynchronize(stop), "timed launches", error) &&
         CudaOk(cudaEventElapsedTime(&milliseconds, start, stop), "cudaEventElapsedTime", error);
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    return ok ? milliseconds / kTimedLaunches : -1.0;
  }

 private:
  // cudaMemcpy that skips empty copies (their pointers may be null).
  static bool Copy(void* destination, const void* source, size_t bytes, cudaMemcpyKind kind,
                   const char* what, std::string* error) {
    return bytes == 0 || CudaOk(cudaMemcpy(destination, source, bytes, kind), what, error);
  }

  const RasterCase& input_;
  cudaStream_t stream_;
  float* vertices_ = nullptr;
  int32_t* triangles_ = nullptr;
  uint64_t* zbuffer_ = nullptr;
  int32_t* triangle_ids_ = nullptr;
  float* depth_ = nullptr;
  float* barycentrics_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Cases. Screen convention (rasterize_triangles_math.h): u right, v down, pixel (r, c) centred at
// (c + 0.5, r + 0.5); a camera-facing triangle has negative `area` (clockwise on screen).
// ---------------------------------------------------------------------------------------------

RasterCase NewCase(const std::string& name, int batch_size, int height, int width,
                   int num_vertices, bool cull_backfaces) {
  RasterCase input;
  input.name = name + (cull_backfaces ? "/cull" : "/nocull");
  input.batch_size = batch_size;
  input.image_height = height;
  input.image_width = width;
  input.num_vertices = num_vertices;
  input.cull_backfaces = cull_backfaces;
  input.vertices.assign(static_cast<size_t>(batch_size) * num_vertices * 3, 1.0f);
  return input;
}

void SetVertex(RasterCase* input, int b, int index, float u, float v, float d) {
  float* vertex = &input->vertices[(static_cast<size_t>(b) * input->num_vertices + index) * 3];
  vertex[0] = u;
  vertex[1] = v;
  vertex[2] = d;
}

float* VertexAt(RasterCase* input, int b, int index) {
  return &input->vertices[(static_cast<size_t>(b) * input->num_vertices + index) * 3];
}

void AddTriangle(RasterCase* input, int32_t i0, int32_t i1, int32_t i2) {
  input->triangles.insert(input->triangles.end(), {i0, i1, i2});
}

// Writes a random triangle at vertices first..first+2 of image b: centre anywhere in the image
// widened by 15 % per side, size log-uniform from 0.3 px to 60 % of the larger side, either
// orientation, and per-vertex depths spread around a base depth in [1, 10] (tilted triangles that
// cut through each other) or, with `flat_depth`, all exactly 4 (ties between different triangles).
void WriteRandomTriangle(Random* random, RasterCase* input, int b, int first, bool flat_depth) {
  const float width = static_cast<float>(input->image_width);
  const float height = static_cast<float>(input->image_height);
  const float centre_u = random->Uniform(-0.15f * width, 1.15f * width);
  const float centre_v = random->Uniform(-0.15f * height, 1.15f * height);
  const float size =
      std::exp(random->Uniform(std::log(0.3f), std::log(0.6f * std::max(width, height))));
  const float base_depth = random->Uniform(1.0f, 10.0f);
  for (int k = 0; k < 3; ++k) {
    SetVertex(input, b, first + k, centre_u + size * random->Uniform(-1.0f, 1.0f),
              centre_v + size * random->Uniform(-1.0f, 1.0f),
              flat_depth ? 4.0f : base_depth + random->Uniform(-0.9f, 0.9f));
  }
}

// Triangles with their own three vertices each: triangle t uses vertices 3t, 3t+1, 3t+2.
RasterCase RandomSoup(const std::string& name, uint64_t seed, int batch_size, int height,
                      int width, int num_triangles, bool flat_depth, bool cull_backfaces) {
  RasterCase input =
      NewCase(name, batch_size, height, width, 3 * num_triangles, cull_backfaces);
  Random random(seed);
  for (int t = 0; t < num_triangles; ++t) AddTriangle(&input, 3 * t, 3 * t + 1, 3 * t + 2);
  for (int b = 0; b < batch_size; ++b) {
    for (int t = 0; t < num_triangles; ++t) {
      WriteRandomTriangle(&random, &input, b, 3 * t, flat_depth);
    }
  }
  return input;
}

// Random index triples into a small shared pool of vertices (repeated indices included).
RasterCase SharedVertexSoup(bool cull_backfaces) {
  const int num_vertices = 40;
  RasterCase input = NewCase("shared_vertex_soup", 2, 32, 32, num_vertices, cull_backfaces);
  Random random(3);
  for (int t = 0; t < 2000; ++t) {
    AddTriangle(&input, random.Below(num_vertices), random.Below(num_vertices),
                random.Below(num_vertices));
  }
  for (int b = 0; b < input.batch_size; ++b) {
    for (int i = 0; i < num_vertices; ++i) {
      SetVertex(&input, b, i, random.Uniform(-4.0f, 36.0f), random.Uniform(-4.0f, 36.0f),
                random.Uniform(1.0f, 3.0f));
    }
  }
  return input;
}

// kCopies copies of each of kBase random triangles; copy j of triangle i has id j * kBase + i.
// Copies 1 and 3 reuse the indices of copy 0, copy 2 points at duplicated vertices with the same
// coordinates, so all copies tie exactly and the copy-0 id (< kBase) must win every pixel.
RasterCase DuplicateTies(bool cull_backfaces) {
  constexpr int kBase = 300;
  constexpr int kCopies = 4;
  RasterCase input = NewCase("duplicate_ties", 2, 40, 48, 6 * kBase, cull_backfaces);
  Random random(4);
  for (int b = 0; b < input.batch_size; ++b) {
    for (int i = 0; i < kBase; ++i) {
      WriteRandomTriangle(&random, &input, b, 3 * i, /*flat_depth=*/false);
      for (int k = 0; k < 3; ++k) {
        const float* vertex = VertexAt(&input, b, 3 * i + k);
        SetVertex(&input, b, 3 * kBase + 3 * i + k, vertex[0], vertex[1], vertex[2]);
      }
    }
  }
  for (int j = 0; j < kCopies; ++j) {
    const int first_vertex = j == 2 ? 3 * kBase : 0;
    for (int i = 0; i < kBase; ++i) {
      AddTriangle(&input, first_vertex + 3 * i, first_vertex + 3 * i + 1,
                  first_vertex + 3 * i + 2);
    }
  }
  input.id_limit = kBase;
  return input;
}

// Triangles straddling every border and corner, wholly off screen (just past the outermost pixel
// centres, far away, at +-1e20 / +-3e38), and huge ones around the whole image (1e4 .. 1e9 px).
RasterCase OffScreen(bool cull_backfaces) {
  constexpr int kTriangles = 320;
  RasterCase input = NewCase("off_screen", 2, 48, 64, 3 * kTriangles, cull_backfaces);
  Random random(5);
  const float width = 64.0f;
  const float height = 48.0f;
  for (int t = 0; t < kTriangles; ++t) AddTriangle(&input, 3 * t, 3 * t + 1, 3 * t + 2);
  for (int b = 0; b < input.batch_size; ++b) {
    for (int t = 0; t < kTriangles; ++t) {
      float u[3];
      float v[3];
      const int kind = t % 8;
      if (kind <= 2) {  // straddles a border or corner
        const float centre_u = random.Coin() ? random.Uniform(-3.0f, 3.0f)
                                             : random.Uniform(width - 3.0f, width + 3.0f);
        const float centre_v = random.Coin() ? random.Uniform(-3.0f, 3.0f)
                                             : random.Uniform(height - 3.0f, height + 3.0f);
        const float size = random.Uniform(1.0f, 30.0f);
        for (int k = 0; k < 3; ++k) {
          u[k] = (kind == 1 ? width * 0.5f : centre_u) + size * random.Uniform(-1.0f, 1.0f);
          v[k] = (kind == 2 ? height * 0.5f : centre_v) + size * random.Uniform(-1.0f, 1.0f);
        }
      } else if (kind <= 4) {  // wholly off one side, some by less than a pixel
        const int side = random.Below(4);
        const float gap = kind == 3 ? random.Uniform(0.0001f, 0.5f) : random.Uniform(1.0f, 40.0f);
        for (int k = 0; k < 3; ++k) {
          const float along_u = random.Uniform(-20.0f, width + 20.0f);
          const float along_v = random.Uniform(-20.0f, height + 20.0f);
          const float depth_into = random.Uniform(0.0f, 30.0f);
          // Pixel centres span [0.5, size - 0.5]; stay beyond them by `gap`.
          switch (side) {
            case 0: u[k] = 0.5f - gap - depth_into; v[k] = along_v; break;
            case 1: u[k] = width - 0.5f + gap + depth_into; v[k] = along_v; break;
            case 2: u[k] = along_u; v[k] = 0.5f - gap - depth_into; break;
            default: u[k] = along_u; v[k] = height - 0.5f + gap + depth_into; break;
          }
        }
      } else if (kind == 5) {  // far away, some beyond float range of the area
        const float scales[] = {1e7f, 1e20f, 3e38f};
        const float scale = scales[random.Below(3)];
        const float sign_u = random.Coin() ? 1.0f : -1.0f;
        const float sign_v = random.Coin() ? 1.0f : -1.0f;
        for (int k = 0; k < 3; ++k) {
          u[k] = sign_u * scale * random.Uniform(0.5f, 1.0f);
          v[k] = sign_v * scale * random.Uniform(0.5f, 1.0f);
        }
      } else {  // huge, around the image; scale 1e20 overflows the area and is dropped
        const float scales[] = {1e4f, 1e6f, 1e9f, 1e20f};
        const float scale = scales[random.Below(4)];
        u[0] = -scale * random.Uniform(1.0f, 2.0f);
        v[0] = -scale * random.Uniform(1.0f, 2.0f);
        u[1] = scale * random.Uniform(2.0f, 4.0f);
        v[1] = -scale * random.Uniform(1.0f, 2.0f);
        u[2] = -scale * random.Uniform(1.0f, 2.0f);
        v[2] = scale * random.Uniform(2.0f, 4.0f);
      }
      if (random.Coin()) {
        std::swap(u[1], u[2]);
        std::swap(v[1], v[2]);
      }
      const float base_depth = random.Uniform(1.0f, 20.0f);
      for (int k = 0; k < 3; ++k) {
        SetVertex(&input, b, 3 * t + k, u[k], v[k], base_depth + random.Uniform(0.0f, 0.5f));
      }
    }
  }
  return input;
}

// Two big background triangles, then triangles in front of them with one or all vertices at a
// depth of 0, -0, -1, NaN, +-inf, a denormal or a tiny/huge positive value, or with a NaN or
// infinite screen coordinate.
RasterCase InvalidVertices(bool cull_backfaces) {
  const float bad_depths[] = {0.0f, -0.0f, -1.0f, kNaN, kInf, -kInf, 1e-45f, 1e-30f, 3e38f};
  const float bad_coordinates[] = {kNaN, kInf, -kInf};
  RasterCase input = NewCase("invalid_vertices", 2, 32, 32, 0, cull_backfaces);
  // Vertex layout per image: 6 background vertices, then 3 per foreground triangle.
  const int num_depth_triangles = 9 * 4;
  const int num_coordinate_triangles = 3 * 2 * 3;
  const int num_foreground = num_depth_triangles + num_coordinate_triangles;
  input.num_vertices = 6 + 3 * num_foreground;
  input.vertices.assign(static_cast<size_t>(input.batch_size) * input.num_vertices * 3, 1.0f);
  AddTriangle(&input, 0, 1, 2);
  AddTriangle(&input, 3, 4, 5);
  for (int t = 0; t < num_foreground; ++t) {
    AddTriangle(&input, 6 + 3 * t, 6 + 3 * t + 1, 6 + 3 * t + 2);
  }
  Random random(6);
  for (int b = 0; b < input.batch_size; ++b) {
    // Background, both orientations so one survives culling.
    SetVertex(&input, b, 0, -10.0f, -10.0f, 50.0f);
    SetVertex(&input, b, 1, -10.0f, 80.0f, 50.0f);
    SetVertex(&input, b, 2, 80.0f, -10.0f, 50.0f);
    SetVertex(&input, b, 3, -10.0f, -10.0f, 60.0f);
    SetVertex(&input, b, 4, 80.0f, -10.0f, 61.0f);
    SetVertex(&input, b, 5, -10.0f, 80.0f, 62.0f);
    int t = 0;
    auto write_foreground = [&](int triangle) {
      const int first = 6 + 3 * triangle;
      const float u = random.Uniform(0.0f, 20.0f);
      const float v = random.Uniform(0.0f, 20.0f);
      const float size = random.Uniform(6.0f, 14.0f);
      // Camera-facing (area < 0) for even triangles, the other way for odd ones.
      const float sign = triangle % 2 == 0 ? 1.0f : -1.0f;
      SetVertex(&input, b, first, u, v, 2.0f);
      SetVertex(&input, b, first + 1, u + (sign > 0 ? 0.0f : size), v + (sign > 0 ? size : 0.0f),
                2.5f);
      SetVertex(&input, b, first + 2, u + (sign > 0 ? size : 0.0f), v + (sign > 0 ? 0.0f : size),
                3.0f);
      return first;
    };
    for (const float bad : bad_depths) {
      for (int slot = 0; slot < 4; ++slot, ++t) {  // slot 3: all three vertices
        const int first = write_foreground(t);
        for (int k = 0; k < 3; ++k) {
          if (slot == 3 || slot == k) VertexAt(&input, b, first + k)[2] = bad;
        }
      }
    }
    for (const float bad : bad_coordinates) {
      for (int axis = 0; axis < 2; ++axis) {
        for (int k = 0; k < 3; ++k, ++t) {
          const int first = write_foreground(t);
          VertexAt(&input, b, first + k)[axis] = bad;
        }
      }
    }
  }
  return input;
}

// Zero-area triangles (collinear, coincident, repeated indices), near-degenerate slivers and
// sub-pixel triangles between no pixel centres, over a valid background.
RasterCase Degenerate(bool cull_backfaces) {
  constexpr int kTriangles = 120;
  RasterCase input = NewCase("degenerate", 2, 32, 32, 3 * kTriangles + 3, cull_backfaces);
  const int background = 3 * kTriangles;
  AddTriangle(&input, background, background + 1, background + 2);
  Random random(7);
  for (int t = 0; t < kTriangles; ++t) {
    switch (t % 6) {
      case 3: AddTriangle(&input, 3 * t, 3 * t, 3 * t); break;
      case 4: AddTriangle(&input, 3 * t, 3 * t + 1, 3 * t); break;
      default: AddTriangle(&input, 3 * t, 3 * t + 1, 3 * t + 2); break;
    }
  }
  for (int b = 0; b < input.batch_size; ++b) {
    SetVertex(&input, b, background, -5.0f, -5.0f, 9.0f);
    SetVertex(&input, b, background + 1, -5.0f, 70.0f, 9.0f);
    SetVertex(&input, b, background + 2, 70.0f, -5.0f, 9.0f);
    for (int t = 0; t < kTriangles; ++t) {
      const float u0 = std::floor(random.Uniform(0.0f, 24.0f)) + 0.5f;  // a pixel centre
      const float v0 = std::floor(random.Uniform(0.0f, 24.0f)) + 0.5f;
      const float du = std::floor(random.Uniform(-6.0f, 7.0f));
      const float dv = std::floor(random.Uniform(-6.0f, 7.0f));
      const float depth = random.Uniform(1.0f, 5.0f);
      float u[3];
      float v[3];
      switch (t % 6) {
        case 0:  // collinear through pixel centres: exactly zero area
          for (int k = 0; k < 3; ++k) {
            u[k] = u0 + du * static_cast<float>(k);
            v[k] = v0 + dv * static_cast<float>(k);
          }
          std::swap(u[1], u[2]);
          std::swap(v[1], v[2]);
          break;
        case 1:  // three coincident points
          for (int k = 0; k < 3; ++k) {
            u[k] = u0;
            v[k] = v0;
          }
          break;
        case 2: {  // sliver: third vertex 1e-5 px off the line through the first two
          const float off = random.Coin() ? 1e-5f : -1e-5f;
          u[0] = u0;
          v[0] = v0;
          u[1] = u0 + 2.0f * du;
          v[1] = v0 + 2.0f * dv;
          u[2] = u0 + du + off;
          v[2] = v0 + dv - off;
          break;
        }
        case 5:  // sub-pixel, strictly between pixel centres
          u[0] = u0 + 0.05f;
          v[0] = v0 + 0.05f;
          u[1] = u0 + 0.9f;
          v[1] = v0 + 0.1f;
          u[2] = u0 + 0.2f;
          v[2] = v0 + 0.85f;
          break;
        default:  // repeated indices (cases 3, 4): any non-degenerate geometry
          u[0] = u0;
          v[0] = v0;
          u[1] = u0 + 5.0f;
          v[1] = v0;
          u[2] = u0;
          v[2] = v0 + 5.0f;
          break;
      }
      for (int k = 0; k < 3; ++k) SetVertex(&input, b, 3 * t + k, u[k], v[k], depth);
    }
  }
  return input;
}

// Random triangles over a shared pool; 40 % of them have one index negative or >= V (the GPU
// skips those triangles).
RasterCase BadIndices(bool cull_backfaces) {
  const int num_vertices = 30;
  const int32_t bad_indices[] = {-1, -2, INT_MIN, num_vertices, num_vertices + 1, 1000000,
                                 INT_MAX};
  RasterCase input = NewCase("bad_indices", 2, 24, 32, num_vertices, cull_backfaces);
  Random random(8);
  for (int t = 0; t < 400; ++t) {
    int32_t corners[3] = {random.Below(num_vertices), random.Below(num_vertices),
                          random.Below(num_vertices)};
    if (random.Below(10) < 4) corners[random.Below(3)] = bad_indices[random.Below(7)];
    AddTriangle(&input, corners[0], corners[1], corners[2]);
  }
  for (int b = 0; b < input.batch_size; ++b) {
    for (int i = 0; i < num_vertices; ++i) {
      SetVertex(&input, b, i, random.Uniform(-4.0f, 36.0f), random.Uniform(-4.0f, 28.0f),
                random.Uniform(1.0f, 3.0f));
    }
  }
  return input;
}

// V = 0: every index is out of range, the image stays background.
RasterCase NoVertices(bool cull_backfaces) {
  RasterCase input = NewCase("no_vertices", 2, 8, 8, 0, cull_backfaces);
  for (int t = 0; t < 10; ++t) AddTriangle(&input, 0, 1, 2);
  input.expect_coverage = false;
  return input;
}

// Five images with their own vertices: soups, one behind the camera, one shifted off screen, one
// with NaN depths.
RasterCase BatchVaried(bool cull_backfaces) {
  RasterCase input = RandomSoup("batch_varied", 9, 5, 20, 24, 200, false, cull_backfaces);
  for (int i = 0; i < input.num_vertices; ++i) {
    VertexAt(&input, 1, i)[2] = -VertexAt(&input, 1, i)[2];
    VertexAt(&input, 3, i)[0] += 1000.0f;
    VertexAt(&input, 4, i)[2] = kNaN;
  }
  return input;
}

RasterCase ZeroTriangles(bool cull_backfaces) {
  RasterCase input = NewCase("zero_triangles", 2, 12, 16, 3, cull_backfaces);
  input.expect_coverage = false;
  return input;
}

RasterCase EmptyBatch(bool cull_backfaces) {
  RasterCase input = RandomSoup("empty_batch", 10, 1, 8, 8, 5, false, cull_backfaces);
  input.batch_size = 0;
  input.vertices.clear();
  input.expect_coverage = false;
  return input;
}

// A 1x1 image: a big triangle around the only pixel centre (0.5, 0.5), one with a vertex on it,
// one with an edge through it, a tiny one beside it, a duplicate and a reversed copy; depths
// differ per image so each image has another winner.
RasterCase SinglePixel(bool cull_backfaces) {
  RasterCase input = NewCase("single_pixel_1x1", 3, 1, 1, 12, cull_backfaces);
  AddTriangle(&input, 0, 1, 2);
  AddTriangle(&input, 3, 4, 5);
  AddTriangle(&input, 6, 7, 8);
  AddTriangle(&input, 9, 10, 11);
  AddTriangle(&input, 0, 1, 2);
  AddTriangle(&input, 3, 5, 4);
  Random random(11);
  for (int b = 0; b < input.batch_size; ++b) {
    const float depth[4] = {random.Uniform(1.0f, 5.0f), random.Uniform(1.0f, 5.0f),
                            random.Uniform(1.0f, 5.0f), random.Uniform(1.0f, 5.0f)};
    SetVertex(&input, b, 0, -3.0f, -3.0f, depth[0]);
    SetVertex(&input, b, 1, -3.0f, 4.0f, depth[0] + 0.5f);
    SetVertex(&input, b, 2, 4.0f, -3.0f, depth[0] + 1.0f);
    SetVertex(&input, b, 3, 0.5f, 0.5f, depth[1]);
    SetVertex(&input, b, 4, 0.5f, 3.0f, depth[1]);
    SetVertex(&input, b, 5, 3.0f, 0.5f, depth[1] + 1.0f);
    SetVertex(&input, b, 6, -2.0f, 0.5f, depth[2]);
    SetVertex(&input, b, 7, 0.5f, 3.0f, depth[2]);
    SetVertex(&input, b, 8, 3.0f, 0.5f, depth[2]);
    SetVertex(&input, b, 9, 0.1f, 0.1f, depth[3]);
    SetVertex(&input, b, 10, 0.1f, 0.4f, depth[3]);
    SetVertex(&input, b, 11, 0.4f, 0.1f, depth[3]);
  }
  return input;
}

// Regular grids whose vertices sit on pixel centres (image 0) or pixel corners (image 1), so edges
// run exactly through pixel centres. Grid A is camera-facing; grid B reuses the same positions and
// depths on duplicated vertices with the other diagonal, facing away: near-ties everywhere.
RasterCase PixelAlignedGrid(bool cull_backfaces) {
  constexpr int kSide = 10;  // vertices per grid row
  constexpr int kGridVertices = kSide * kSide;
  RasterCase input = NewCase("pixel_aligned_grid", 2, 32, 32, 2 * kGridVertices, cull_backfaces);
  auto index = [](int i, int j) { return j * kSide + i; };
  for (int j = 0; j + 1 < kSide; ++j) {
    for (int i = 0; i + 1 < kSide; ++i) {
      const int p00 = index(i, j), p10 = index(i + 1, j);
      const int p01 = index(i, j + 1), p11 = index(i + 1, j + 1);
      AddTriangle(&input, p00, p01, p10);  // area < 0: camera-facing
      AddTriangle(&input, p10, p01, p11);
      AddTriangle(&input, kGridVertices + p00, kGridVertices + p10, kGridVertices + p11);
      AddTriangle(&input, kGridVertices + p00, kGridVertices + p11, kGridVertices + p01);
    }
  }
  for (int b = 0; b < input.batch_size; ++b) {
    const float origin = b == 0 ? 1.5f : 1.0f;
    for (int j = 0; j < kSide; ++j) {
      for (int i = 0; i < kSide; ++i) {
        const float u = origin + 3.0f * static_cast<float>(i);
        const float v = origin + 3.0f * static_cast<float>(j);
        const float d = 2.0f + 0.01f * static_cast<float>(i) + 0.02f * static_cast<float>(j);
        SetVertex(&input, b, index(i, j), u, v, d);
        SetVertex(&input, b, kGridVertices + index(i, j), u, v, d);
      }
    }
  }
  return input;
}

// A closed latitude-longitude sphere, 2 * segments * (rings - 1) triangles, with per-image bumps
// on the radius (so parts of the surface hide others), random orientation and position, seen by
// a perspective camera; some images are partly off screen. Triangles face outward and are
// camera-facing (area < 0) on screen when seen from outside.
RasterCase BumpySphere(const std::string& name, int rings, int segments, int batch_size,
                       int image_size, bool cull_backfaces, bool large) {
  const int num_vertices = 2 + (rings - 1) * segments;
  RasterCase input =
      NewCase(name, batch_size, image_size, image_size, num_vertices, cull_backfaces);
  input.large = large;
  const double pi = 3.14159265358979323846;
  // Unit-sphere directions: north pole, rings 1..rings-1, south pole.
  std::vector<double> directions;
  directions.insert(directions.end(), {0.0, 1.0, 0.0});
  for (int i = 1; i < rings; ++i) {
    const double theta = pi * i / rings;
    for (int j = 0; j < segments; ++j) {
      const double phi = 2.0 * pi * j / segments;
      directions.insert(directions.end(), {std::sin(theta) * std::cos(phi), std::cos(theta),
                                           std::sin(theta) * std::sin(phi)});
    }
  }
  directions.insert(directions.end(), {0.0, -1.0, 0.0});
  const int south = num_vertices - 1;
  auto ring_vertex = [&](int i, int j) { return 1 + (i - 1) * segments + j % segments; };
  for (int j = 0; j < segments; ++j) {
    AddTriangle(&input, 0, ring_vertex(1, j), ring_vertex(1, j + 1));
    AddTriangle(&input, south, ring_vertex(rings - 1, j + 1), ring_vertex(rings - 1, j));
  }
  for (int i = 1; i + 1 < rings; ++i) {
    for (int j = 0; j < segments; ++j) {
      const int a = ring_vertex(i, j), b = ring_vertex(i, j + 1);
      const int c = ring_vertex(i + 1, j), d = ring_vertex(i + 1, j + 1);
      AddTriangle(&input, a, c, d);
      AddTriangle(&input, a, d, b);
    }
  }
  // Make every triangle wind the same way around its outward normal.
  const int num_triangles = input.num_triangles();
  for (int t = 0; t < num_triangles; ++t) {
    int32_t* corners = &input.triangles[3 * t];
    const double* p0 = &directions[3 * corners[0]];
    const double* p1 = &directions[3 * corners[1]];
    const double* p2 = &directions[3 * corners[2]];
    const double e1[3] = {p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]};
    const double e2[3] = {p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]};
    const double normal[3] = {e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2],
                              e1[0] * e2[1] - e1[1] * e2[0]};
    const double outward = normal[0] * (p0[0] + p1[0] + p2[0]) +
                            normal[1] * (p0[1] + p1[1] + p2[1]) +
                            normal[2] * (p0[2] + p1[2] + p2[2]);
    if (outward < 0.0) std::swap(corners[1], corners[2]);
  }
  // Camera: x right, y up, depth d = z > 0; u = W/2 + f x / z, v = H/2 - f y / z.
  const double focal = 1.1 * image_size;
  const double centre = 0.5 * image_size;
  auto project = [&](const double* point, float* vertex) {
    vertex[0] = static_cast<float>(centre + focal * point[0] / point[2]);
    vertex[1] = static_cast<float>(centre - focal * point[1] / point[2]);
    vertex[2] = static_cast<float>(point[2]);
  };
  // Which winding faces the camera depends on the camera's handedness: seen from (0, 0, -3), the
  // triangle nearest the camera must have area < 0, else flip all.
  {
    int nearest = 0;
    double nearest_z = 1e30;
    for (int t = 0; t < num_triangles; ++t) {
      double z = 0.0;
      for (int k = 0; k < 3; ++k) z += directions[3 * input.triangles[3 * t + k] + 2];
      if (z < nearest_z) {
        nearest_z = z;
        nearest = t;
      }
    }
    float corners[3][3];
    for (int k = 0; k < 3; ++k) {
      const double* direction = &directions[3 * input.triangles[3 * nearest + k]];
      const double point[3] = {direction[0], direction[1], direction[2] + 3.0};
      project(point, corners[k]);
    }
    const float area = (corners[1][0] - corners[0][0]) * (corners[2][1] - corners[0][1]) -
                       (corners[1][1] - corners[0][1]) * (corners[2][0] - corners[0][0]);
    if (area > 0.0f) {
      for (int t = 0; t < num_triangles; ++t) {
        std::swap(input.triangles[3 * t + 1], input.triangles[3 * t + 2]);
      }
    }
  }
  Random random(1000 + rings);
  for (int b = 0; b < batch_size; ++b) {
    const double yaw = random.Uniform(-3.1f, 3.1f);
    const double pitch = random.Uniform(-1.5f, 1.5f);
    const double roll = random.Uniform(-3.1f, 3.1f);
    const double bump_phase_theta = random.Uniform(0.0f, 6.2f);
    const double bump_phase_phi = random.Uniform(0.0f, 6.2f);
    const double translation[3] = {random.Uniform(-0.45f, 0.45f), random.Uniform(-0.45f, 0.45f),
                                   random.Uniform(3.0f, 3.6f)};
    // rotation = Rz(roll) * Ry(yaw) * Rx(pitch)
    const double cx = std::cos(pitch), sx = std::sin(pitch);
    const double cy = std::cos(yaw), sy = std::sin(yaw);
    const double cz = std::cos(roll), sz = std::sin(roll);
    const double rotation[3][3] = {
        {cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx},
        {sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx},
        {-sy, cy * sx, cy * cx}};
    for (int i = 0; i < num_vertices; ++i) {
      const double* direction = &directions[3 * i];
      const double theta = std::acos(std::max(-1.0, std::min(1.0, direction[1])));
      const double phi = std::atan2(direction[2], direction[0]);
      const double radius = 1.0 + 0.15 * std::sin(5.0 * theta + bump_phase_theta) *
                                      std::cos(4.0 * phi + bump_phase_phi);
      double point[3];
      for (int row = 0; row < 3; ++row) {
        point[row] = translation[row] + radius * (rotation[row][0] * direction[0] +
                                                  rotation[row][1] * direction[1] +
                                                  rotation[row][2] * direction[2]);
      }
      project(point, VertexAt(&input, b, i));
    }
  }
  return input;
}

std::vector<RasterCase> BuildCases(bool quick) {
  std::vector<RasterCase> cases;
  for (const bool cull : {false, true}) {
    cases.push_back(RandomSoup("random_soup", 1, 3, 48, 64, 1500, false, cull));
    cases.push_back(RandomSoup("random_soup_flat_depth", 2, 2, 40, 40, 800, true, cull));
    cases.push_back(SharedVertexSoup(cull));
    cases.push_back(DuplicateTies(cull));
    cases.push_back(OffScreen(cull));
    cases.push_back(InvalidVertices(cull));
    cases.push_back(Degenerate(cull));
    cases.push_back(BadIndices(cull));
    cases.push_back(NoVertices(cull));
    cases.push_back(BatchVaried(cull));
    cases.push_back(ZeroTriangles(cull));
    cases.push_back(EmptyBatch(cull));
    cases.push_back(SinglePixel(cull));
    cases.push_back(RandomSoup("non_square_37x61", 12, 2, 37, 61, 300, false, cull));
    cases.push_back(RandomSoup("non_square_61x37", 13, 2, 61, 37, 300, false, cull));
    cases.push_back(RandomSoup("strip_1x300", 14, 2, 1, 300, 100, false, cull));
    cases.push_back(RandomSoup("strip_300x1", 15, 2, 300, 1, 100, false, cull));
    cases.push_back(PixelAlignedGrid(cull));
    cases.push_back(BumpySphere("sphere_720_48x48_b2", 16, 24, 2, 48, cull, false));
  }
  if (!quick) {
    for (const bool cull : {false, true}) {
      cases.push_back(BumpySphere("mesh_5k_128x128_b8", 50, 51, 8, 128, cull, true));
      cases.push_back(BumpySphere("mesh_50k_240x240_b8", 158, 159, 8, 240, cull, true));
    }
  }
  return cases;
}

std::string Summary(const RasterCase& input, int64_t covered_pixels) {
  const double percent =
      input.num_pixels() > 0 ? 100.0 * covered_pixels / static_cast<double>(input.num_pixels())
                             : 0.0;
  return Format("B=%d T=%d V=%d %dx%d, %.1f%% of %" PRId64 " px covered", input.batch_size,
                input.num_triangles(), input.num_vertices, input.image_height,
                input.image_width, percent, input.num_pixels());
}

void PrintResult(bool passed, const std::string& name, const std::string& details) {
  printf("%s %s  [%s]\n", passed ? "PASS" : "FAIL", name.c_str(), details.c_str());
  fflush(stdout);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// --host-only: reference against brute force, plus the output invariants of the reference.
int RunHostOnly(const std::vector<RasterCase>& cases) {
  int failures = 0;
  for (const RasterCase& input : cases) {
    const auto start = std::chrono::steady_clock::now();
    RasterOutput reference;
    RasterizeReference(input, &reference);
    const int64_t tests = input.num_pixels() * input.num_triangles();
    int64_t stride = std::max<int64_t>(1, (tests + kBruteForceTestsPerCase - 1) /
                                              kBruteForceTestsPerCase);
    // Coprime to the width, so the sample visits every column.
    while (stride > 1 && std::gcd<int64_t>(stride, input.image_width) != 1) ++stride;
    RasterOutput brute_force;
    std::vector<uint8_t> evaluated;
    RasterizeBruteForce(input, stride, &brute_force, &evaluated);
    const Difference difference = Compare(brute_force, reference, &evaluated);
    int64_t covered_pixels = 0;
    const std::string invariant_error = CheckInvariants(input, reference, &covered_pixels);
    const bool passed = difference.mismatched_pixels == 0 && invariant_error.empty();
    std::string details = Summary(input, covered_pixels);
    details += stride == 1 ? "; compared at every pixel"
                           : Format("; compared at %" PRId64 " sampled pixels (1 in %" PRId64 ")",
                                    difference.compared_pixels, stride);
    if (difference.mismatched_pixels > 0) {
      details += "; reference vs brute force: " +
                 DescribeDifference(input, difference, brute_force, "brute force", reference,
                                    "reference");
    }
    if (!invariant_error.empty()) details += "; reference output: " + invariant_error;
    details += Format("; %.2f s", SecondsSince(start));
    PrintResult(passed, input.name, details);
    failures += !passed;
  }
  return failures;
}

struct Timing {
  std::string name;
  int num_triangles;
  double gpu_milliseconds;
  double host_milliseconds;
};

// Default and --quick: GPU against the reference.
int RunGpu(const std::vector<RasterCase>& cases, bool with_timings) {
  cudaStream_t stream = nullptr;
  std::string stream_error;
  if (!CudaOk(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate",
              &stream_error)) {
    PrintResult(false, "setup", stream_error);
    return 1;
  }
  int failures = 0;
  std::vector<Timing> timings;
  for (const RasterCase& input : cases) {
    RasterOutput reference;
    RasterizeReference(input, &reference);
    std::string error;
    RasterOutput first;
    RasterOutput second;
    GpuCase gpu(input, stream);
    const bool ran = gpu.Upload(&error) && gpu.Poison(0xA5, &error) && gpu.Launch(&error) &&
                     gpu.Download(&first, &error) && gpu.Poison(0x5A, &error) &&
                     gpu.Launch(&error) && gpu.Download(&second, &error);
    if (!ran) {
      PrintResult(false, input.name, "CUDA error: " + error);
      ++failures;
      continue;
    }
    const Difference difference = Compare(reference, first, nullptr);
    const Difference repeat_difference = Compare(first, second, nullptr);
    int64_t covered_pixels = 0;
    const std::string invariant_error = CheckInvariants(input, first, &covered_pixels);
    const bool passed = difference.mismatched_pixels == 0 &&
                        repeat_difference.mismatched_pixels == 0 && invariant_error.empty();
    std::string details = Summary(input, covered_pixels);
    if (passed) details += "; bit-identical to the reference on both launches";
    if (difference.mismatched_pixels > 0) {
      details += "; GPU vs reference: " +
                 DescribeDifference(input, difference, reference, "reference", first, "GPU");
    }
    if (repeat_difference.mismatched_pixels > 0) {
      details += "; second launch vs first: " +
                 DescribeDifference(input, repeat_difference, first, "first", second, "second");
    }
    if (!invariant_error.empty()) details += "; GPU output: " + invariant_error;
    PrintResult(passed, input.name, details);
    failures += !passed;

    if (with_timings && input.large) {
      Timing timing{input.name, input.num_triangles(), gpu.MillisecondsPerLaunch(&error), 0.0};
      if (timing.gpu_milliseconds < 0.0) {
        PrintResult(false, input.name + " (timing)", "CUDA error: " + error);
        ++failures;
        continue;
      }
      double best = 1e30;
      for (int run = 0; run < kHostTimingRuns; ++run) {
        const auto start = std::chrono::steady_clock::now();
        RasterizeReference(input, &reference);
        best = std::min(best, 1000.0 * SecondsSince(start));
      }
      timing.host_milliseconds = best;
      timings.push_back(timing);
    }
  }
  if (!timings.empty()) {
    printf("\nTimings (GPU: cudaEvents over %d launches after %d warm-ups, per launch of the whole "
           "batch; host: single-thread reference, best of %d, per batch):\n",
           kTimedLaunches, kWarmupLaunches, kHostTimingRuns);
    for (const Timing& timing : timings) {
      printf("TIME %-28s T=%-6d GPU %9.4f ms/launch   host %9.2f ms/batch   host/GPU %8.1fx\n",
             timing.name.c_str(), timing.num_triangles, timing.gpu_milliseconds,
             timing.host_milliseconds, timing.host_milliseconds / timing.gpu_milliseconds);
    }
  }
  cudaStreamDestroy(stream);
  return failures;
}

// Returns true when a CUDA device is usable; otherwise prints why.
bool FindDevice() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    printf("NO CUDA DEVICE: cudaGetDeviceCount %s (%s: %s, %d devices); nothing was checked. "
           "Run with --host-only to check the host reference without a GPU.\n",
           status == cudaSuccess ? "found no device" : "failed", cudaGetErrorName(status),
           cudaGetErrorString(status), count);
    return false;
  }
  cudaDeviceProp properties;
  if (cudaGetDeviceProperties(&properties, 0) == cudaSuccess) {
    printf("device 0 of %d: %s, compute capability %d.%d, %d SMs\n", count, properties.name,
           properties.major, properties.minor, properties.multiProcessorCount);
  }
  return true;
}

int Main(int argc, char** argv) {
  bool quick = false;
  bool host_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    if (argument == "--quick") {
      quick = true;
    } else if (argument == "--host-only") {
      host_only = true;
    } else {
      fprintf(stderr, "usage: %s [--quick] [--host-only]\n", argv[0]);
      return argument == "--help" || argument == "-h" ? kExitPass : kExitUsage;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (!host_only && !FindDevice()) return kExitNoDevice;
  const std::vector<RasterCase> cases = BuildCases(quick);
  printf("%s: %zu cases%s\n",
         host_only ? "host reference vs brute force" : "GPU vs host reference", cases.size(),
         quick ? " (--quick)" : "");
  const int failures = host_only ? RunHostOnly(cases) : RunGpu(cases, /*with_timings=*/!quick);
  printf("%s: %d failure(s) in %zu cases (%.1f s)\n", failures == 0 ? "ALL PASSED" : "FAILED",
         failures, cases.size(), SecondsSince(start));
  return failures == 0 ? kExitPass : kExitFail;
}

}  // namespace
}  // namespace raster
}  // namespace mofl

int main(int argc, char** argv) { return mofl::raster::Main(argc, argv); }
