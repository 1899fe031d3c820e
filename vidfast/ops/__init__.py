"""vidfast.ops: native op front-ends (C++/OpenMP, CUDA) and their plain-PyTorch references."""

from vidfast.ops.cube_crop import OUT_DTYPES, cube_crop, cube_crop_reference, native_available

__all__ = ["OUT_DTYPES", "cube_crop", "cube_crop_reference", "native_available"]
