// Schema of vidfast::cube_crop and the argument checks / planning shared by its CPU and CUDA kernels.
#include "cube_crop.h"

#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

namespace vidfast {
namespace ops {

namespace {

std::string shape_str(const at::Tensor& x) { return c10::str(x.sizes()); }

// Index-like argument: integer (or bool where allowed) tensor of the given shape on the CPU or the video's device.
at::Tensor host_index(const char* name, const at::Tensor& x, at::IntArrayRef shape, const c10::Device& device,
                      bool allow_bool) {
  TORCH_CHECK_VALUE(x.defined(), name, ": expected a tensor");
  const bool ok_dtype = at::isIntegralType(x.scalar_type(), /*includeBool=*/allow_bool);
  TORCH_CHECK_VALUE(ok_dtype, name, ": expected ", allow_bool ? "a bool or integer" : "an integer",
                    " tensor, got dtype ", x.scalar_type());
  TORCH_CHECK_VALUE(x.sizes() == shape, name, ": expected shape ", shape, ", got ", shape_str(x));
  TORCH_CHECK_VALUE(x.device().is_cpu() || x.device() == device, name, ": is on ", x.device(),
                    " but video is on ", device, " (use the video's device or cpu)");
  return x.to(at::kCPU, at::kLong).contiguous();
}

}  // namespace

CubeCropPlan plan_cube_crop(at::TensorList video, const at::Tensor& frame_idx, const at::Tensor& boxes,
                            at::IntArrayRef out_size, const c10::optional<at::Tensor>& perm,
                            const c10::optional<at::Tensor>& flip, const c10::optional<at::Tensor>& rot,
                            const c10::optional<at::Tensor>& channel, at::ArrayRef<double> mean,
                            at::ArrayRef<double> std, at::ScalarType dtype, bool channels_last,
                            c10::DeviceType device_type, bool pinned) {
  CubeCropPlan plan;
  // --- video: one [N, T, H, W, 3] batch or a list of [T, H, W, 3] clips, uint8, all on one device.
  TORCH_CHECK_VALUE(!video.empty(), "video: the list of clips is empty");
  const bool batched = video.size() == 1 && video[0].dim() == 5;
  const c10::Device device = video[0].device();
  TORCH_CHECK_VALUE(device.type() == device_type, "video: is on ", device, " but this kernel runs on ",
                    c10::DeviceTypeName(device_type));
  for (size_t i = 0; i < video.size(); ++i) {
    const at::Tensor& v = video[i];
    TORCH_CHECK_VALUE(v.defined(), "video[", i, "]: undefined tensor");
    TORCH_CHECK_VALUE(batched || v.dim() == 4, "video: expected a tensor [N, T, H, W, 3] or a list of [T, H, W, 3]",
                      " tensors, got ", shape_str(v), batched ? "" : c10::str(" at [", i, "]"));
    TORCH_CHECK_VALUE(v.scalar_type() == at::kByte, "video: expected dtype uint8, got ", v.scalar_type());
    TORCH_CHECK_VALUE(v.size(-1) == kChannels, "video: expected 3 channels in the last dimension, got ", v.size(-1));
    TORCH_CHECK_VALUE(v.device() == device, "video: all clips must be on one device, got ", device, " and ",
                      v.device(), " at [", i, "]");
  }
  const int64_t n = batched ? video[0].size(0) : static_cast<int64_t>(video.size());

  // --- sizes
  TORCH_CHECK_VALUE(out_size.size() == 3, "out_size: expected (t, oh, ow), got ", out_size);
  TORCH_CHECK_VALUE(out_size[0] >= 1 && out_size[1] >= 1 && out_size[2] >= 1,
                    "out_size: expected three positive ints (t, oh, ow), got ", out_size);
  const int64_t t = out_size[0], oh = out_size[1], ow = out_size[2];
  TORCH_CHECK_VALUE(frame_idx.defined() && frame_idx.dim() == 3, "frame_idx: expected an integer tensor [N, P, t]",
                    frame_idx.defined() ? c10::str(", got ", shape_str(frame_idx)) : std::string());
  const int64_t p = frame_idx.size(1);
  const int64_t np = n * p;
  const at::Tensor frames_in = host_index("frame_idx", frame_idx, {n, p, t}, device, false);
  const at::Tensor boxes_in = host_index("boxes", boxes, {n, p, 4}, device, false);
  const auto opt_index = [&](const char* name, const c10::optional<at::Tensor>& x, bool allow_bool) {
    return x.has_value() && x->defined() ? host_index(name, *x, {n, p}, device, allow_bool) : at::Tensor();
  };
  const at::Tensor perm_in = opt_index("perm", perm, false);
  const at::Tensor flip_in = opt_index("flip", flip, true);
  const at::Tensor rot_in = opt_index("rot", rot, false);
  const at::Tensor channel_in = opt_index("channel", channel, false);
  TORCH_CHECK_VALUE(mean.size() == kChannels, "mean: expected 3 numbers (one per channel), got ", mean.size());
  TORCH_CHECK_VALUE(std.size() == kChannels, "std: expected 3 numbers (one per channel), got ", std.size());
  for (int c = 0; c < kChannels; ++c) TORCH_CHECK_VALUE(std[c] != 0.0, "std: must be non-zero, got ", std);
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
                    "dtype: expected one of float32, float16, bfloat16, got ", dtype);

  // --- table
  plan.n = n;
  plan.p = p;
  plan.t = t;
  plan.oh = oh;
  plan.ow = ow;
  plan.dtype = dtype;
  plan.channels_last = channels_last;
  plan.pieces_offset = n * kClipCols;
  plan.frames_offset = plan.pieces_offset + np * kPieceCols;
  plan.lut_offset = plan.frames_offset + np * t;
  const int64_t lut_words = kChannels * 256 / 2;
  plan.table = at::empty({plan.lut_offset + lut_words}, at::TensorOptions().dtype(at::kLong).pinned_memory(pinned));
  int64_t* table = plan.table.data_ptr<int64_t>();

  int64_t* clips = table;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& v = batched ? video[0] : video[i];
    const int64_t d = batched ? 1 : 0;  // first frame dimension
    const auto* base = static_cast<const uint8_t*>(v.const_data_ptr()) + (batched ? i * v.stride(0) : 0);
    int64_t* row = clips + i * kClipCols;
    row[kClipPtr] = reinterpret_cast<int64_t>(base);
    row[kClipT] = v.size(d);
    row[kClipH] = v.size(d + 1);
    row[kClipW] = v.size(d + 2);
    row[kClipST] = v.stride(d);
    row[kClipSH] = v.stride(d + 1);
    row[kClipSW] = v.stride(d + 2);
    row[kClipSC] = v.stride(d + 3);
  }

  const int64_t* fr = frames_in.const_data_ptr<int64_t>();
  const int64_t* bx = boxes_in.const_data_ptr<int64_t>();
  const int64_t* pm = perm_in.defined() ? perm_in.const_data_ptr<int64_t>() : nullptr;
  const int64_t* fl = flip_in.defined() ? flip_in.const_data_ptr<int64_t>() : nullptr;
  const int64_t* rt = rot_in.defined() ? rot_in.const_data_ptr<int64_t>() : nullptr;
  const int64_t* ch = channel_in.defined() ? channel_in.const_data_ptr<int64_t>() : nullptr;
  // Checks on the inputs as given (by input piece), then the output rows (by output piece, through perm).
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* clip = clips + i * kClipCols;
    for (int64_t k = 0; k < p; ++k) {
      const int64_t q = i * p + k;
      for (int64_t f = 0; f < t; ++f) {
        const int64_t frame = fr[q * t + f];
        TORCH_CHECK_INDEX(frame >= 0 && frame < clip[kClipT], "frame_idx: frame ", frame, " at [", i, ", ", k, ", ",
                          f, "] is outside its clip of ", clip[kClipT], " frames");
      }
      const int64_t* b = bx + q * 4;
      TORCH_CHECK_VALUE(b[2] >= 1 && b[3] >= 1, "boxes: box ", at::IntArrayRef(b, 4), " at [", i, ", ", k,
                        "] has a height or width < 1");
      TORCH_CHECK_INDEX(b[0] >= 0 && b[1] >= 0 && b[0] + b[2] <= clip[kClipH] && b[1] + b[3] <= clip[kClipW],
                        "boxes: box (y0, x0, h, w) = ", at::IntArrayRef(b, 4), " at [", i, ", ", k,
                        "] lies outside its ", clip[kClipH], "x", clip[kClipW], " frame");
      const int64_t src = pm ? pm[q] : k;
      TORCH_CHECK_INDEX(src >= 0 && src < p, "perm: piece index ", src, " at [", i, ", ", k, "] is outside [0, ",
                        p - 1, "]");
      const int64_t r = rt ? rt[q] : 0;
      TORCH_CHECK_VALUE(r >= 0 && r <= 3, "rot: rotation ", r, " at [", i, ", ", k, "] is outside [0, 3]");
      TORCH_CHECK_VALUE(r % 2 == 0 || oh == ow, "rot: odd rotations need a square output, got out_size ", out_size);
      const int64_t c = ch ? ch[q] : -1;
      TORCH_CHECK_VALUE(c >= -1 && c <= 2, "channel: channel ", c, " at [", i, ", ", k, "] is outside [-1, 2]");
    }
  }
  int64_t* pieces = table + plan.pieces_offset;
  int64_t* frames = table + plan.frames_offset;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < p; ++k) {
      const int64_t q = i * p + k;
      const int64_t src = i * p + (pm ? pm[q] : k);
      int64_t* row = pieces + q * kPieceCols;
      row[kPieceClip] = i;
      row[kPieceY0] = bx[src * 4 + 0];
      row[kPieceX0] = bx[src * 4 + 1];
      row[kPieceH] = bx[src * 4 + 2];
      row[kPieceW] = bx[src * 4 + 3];
      row[kPieceFlip] = fl && fl[q] != 0 ? 1 : 0;
      row[kPieceRot] = rt ? rt[q] : 0;
      row[kPieceChannel] = ch ? ch[q] : -1;
      std::copy(fr + src * t, fr + (src + 1) * t, frames + q * t);
    }
  }

  auto* lut = reinterpret_cast<float*>(table + plan.lut_offset);
  for (int c = 0; c < kChannels; ++c) {
    plan.scale[c] = static_cast<float>(1.0 / (255.0 * std[c]));
    plan.bias[c] = static_cast<float>(-mean[c] / std[c]);
    for (int v = 0; v < 256; ++v) lut[c * 256 + v] = add_rn(mul_rn(static_cast<float>(v), plan.scale[c]), plan.bias[c]);
  }

  // --- output: [N, P, 3, t, oh, ow]; channels_last puts the channel innermost (channels_last_3d per piece).
  const int64_t piece = kChannels * t * oh * ow;
  plan.out_sizes = {n, p, kChannels, t, oh, ow};
  plan.out_strides = channels_last
                         ? std::vector<int64_t>{p * piece, piece, 1, oh * ow * kChannels, ow * kChannels, kChannels}
                         : std::vector<int64_t>{p * piece, piece, t * oh * ow, oh * ow, ow, 1};
  plan.device = device;
  return plan;
}

}  // namespace ops
}  // namespace vidfast

TORCH_LIBRARY(vidfast, m) {
  m.def(
      "cube_crop(Tensor[] video, Tensor frame_idx, Tensor boxes, int[] out_size, Tensor? perm, Tensor? flip, "
      "Tensor? rot, Tensor? channel, float[] mean, float[] std, ScalarType dtype, bool channels_last) -> Tensor");
  // Verification only (tests): cube_crop through its CUDA kernel code in launches of at most max_grid = (x, y)
  // blocks (default: CUDA's limits).  CUDA tensors run the real kernel; CPU tensors run the kernel's per-thread
  // body on the host over the same launches, blocks and threads (no GPU needed, slow).
  m.def(
      "cube_crop_cuda_check(Tensor[] video, Tensor frame_idx, Tensor boxes, int[] out_size, Tensor? perm, "
      "Tensor? flip, Tensor? rot, Tensor? channel, float[] mean, float[] std, ScalarType dtype, bool channels_last, "
      "int[]? max_grid=None) -> Tensor");
}
