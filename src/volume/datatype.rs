//! NIfTI voxel types: decoding raw bytes into `f32` (with scaling) and encoding
//! typed slices for writing.

/// The voxel types we read and write (NIfTI `datatype` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoxelType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl VoxelType {
    pub const ALL: [VoxelType; 10] = [
        VoxelType::U8,
        VoxelType::I8,
        VoxelType::I16,
        VoxelType::U16,
        VoxelType::I32,
        VoxelType::U32,
        VoxelType::I64,
        VoxelType::U64,
        VoxelType::F32,
        VoxelType::F64,
    ];

    pub fn from_code(code: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The `datatype` field value of nifti1.h.
    pub fn code(self) -> i16 {
        match self {
            VoxelType::U8 => 2,
            VoxelType::I16 => 4,
            VoxelType::I32 => 8,
            VoxelType::F32 => 16,
            VoxelType::F64 => 64,
            VoxelType::I8 => 256,
            VoxelType::U16 => 512,
            VoxelType::U32 => 768,
            VoxelType::I64 => 1024,
            VoxelType::U64 => 1280,
        }
    }

    pub fn size(self) -> usize {
        match self {
            VoxelType::U8 | VoxelType::I8 => 1,
            VoxelType::I16 | VoxelType::U16 => 2,
            VoxelType::I32 | VoxelType::U32 | VoxelType::F32 => 4,
            VoxelType::I64 | VoxelType::U64 | VoxelType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VoxelType::U8 => "uint8",
            VoxelType::I8 => "int8",
            VoxelType::I16 => "int16",
            VoxelType::U16 => "uint16",
            VoxelType::I32 => "int32",
            VoxelType::U32 => "uint32",
            VoxelType::I64 => "int64",
            VoxelType::U64 => "uint64",
            VoxelType::F32 => "float32",
            VoxelType::F64 => "float64",
        }
    }
}

/// Names of NIfTI types we recognise but cannot turn into scalar images.
pub fn unsupported_type_name(code: i16) -> Option<&'static str> {
    match code {
        1 => Some("binary (1 bit)"),
        32 => Some("complex64"),
        128 => Some("rgb24"),
        1536 => Some("float128"),
        1792 => Some("complex128"),
        2048 => Some("complex256"),
        2304 => Some("rgba32"),
        _ => None,
    }
}

/// Linear intensity scaling stored in the header (`scl_slope`, `scl_inter`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    pub slope: f32,
    pub inter: f32,
}

impl Scaling {
    /// The scaling the NIfTI standard says to apply: none when the slope is 0 or
    /// not finite.
    pub fn from_header(slope: f32, inter: f32) -> Option<Scaling> {
        let inter = if inter.is_finite() { inter } else { 0.0 };
        (slope != 0.0 && slope.is_finite() && !(slope == 1.0 && inter == 0.0))
            .then_some(Scaling { slope, inter })
    }
}

macro_rules! decode_with {
    ($bytes:expr, $out:expr, $t:ty, $big:expr, $scale:expr) => {{
        const N: usize = std::mem::size_of::<$t>();
        let chunks = $bytes.chunks_exact(N);
        match ($big, $scale) {
            (false, None) => $out
                .extend(chunks.map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; N])) as f32)),
            (true, None) => $out
                .extend(chunks.map(|c| <$t>::from_be_bytes(c.try_into().unwrap_or([0; N])) as f32)),
            (false, Some(Scaling { slope, inter })) => $out.extend(chunks.map(|c| {
                <$t>::from_le_bytes(c.try_into().unwrap_or([0; N])) as f32 * slope + inter
            })),
            (true, Some(Scaling { slope, inter })) => $out.extend(chunks.map(|c| {
                <$t>::from_be_bytes(c.try_into().unwrap_or([0; N])) as f32 * slope + inter
            })),
        }
    }};
}

/// Appends the voxels in `bytes` to `out` as `f32`, applying `scaling`.
/// `bytes.len()` must be a multiple of the type's size (the reader checks this).
pub fn decode_to_f32(
    ty: VoxelType,
    bytes: &[u8],
    big_endian: bool,
    scaling: Option<Scaling>,
    out: &mut Vec<f32>,
) {
    out.reserve(bytes.len() / ty.size());
    match ty {
        VoxelType::U8 => decode_with!(bytes, out, u8, big_endian, scaling),
        VoxelType::I8 => decode_with!(bytes, out, i8, big_endian, scaling),
        VoxelType::I16 => decode_with!(bytes, out, i16, big_endian, scaling),
        VoxelType::U16 => decode_with!(bytes, out, u16, big_endian, scaling),
        VoxelType::I32 => decode_with!(bytes, out, i32, big_endian, scaling),
        VoxelType::U32 => decode_with!(bytes, out, u32, big_endian, scaling),
        VoxelType::I64 => decode_with!(bytes, out, i64, big_endian, scaling),
        VoxelType::U64 => decode_with!(bytes, out, u64, big_endian, scaling),
        VoxelType::F32 => decode_with!(bytes, out, f32, big_endian, scaling),
        VoxelType::F64 => decode_with!(bytes, out, f64, big_endian, scaling),
    }
}

/// A Rust type that can be written as NIfTI voxels (always little-endian).
pub trait Voxel: Copy + Send + Sync + 'static {
    const TYPE: VoxelType;
    fn extend_le(values: &[Self], out: &mut Vec<u8>);
}

macro_rules! impl_voxel {
    ($t:ty, $v:expr) => {
        impl Voxel for $t {
            const TYPE: VoxelType = $v;
            fn extend_le(values: &[Self], out: &mut Vec<u8>) {
                out.reserve(values.len() * std::mem::size_of::<$t>());
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    };
}

impl_voxel!(u8, VoxelType::U8);
impl_voxel!(i8, VoxelType::I8);
impl_voxel!(i16, VoxelType::I16);
impl_voxel!(u16, VoxelType::U16);
impl_voxel!(i32, VoxelType::I32);
impl_voxel!(u32, VoxelType::U32);
impl_voxel!(i64, VoxelType::I64);
impl_voxel!(u64, VoxelType::U64);
impl_voxel!(f32, VoxelType::F32);
impl_voxel!(f64, VoxelType::F64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for t in VoxelType::ALL {
            assert_eq!(VoxelType::from_code(t.code()), Some(t));
        }
        assert_eq!(VoxelType::from_code(128), None);
        assert_eq!(unsupported_type_name(128), Some("rgb24"));
    }

    #[test]
    fn decodes_both_byte_orders_with_scaling() {
        let mut out = Vec::new();
        decode_to_f32(
            VoxelType::I16,
            &[0x01, 0x00, 0xff, 0xff],
            false,
            None,
            &mut out,
        );
        decode_to_f32(VoxelType::I16, &[0x00, 0x02], true, None, &mut out);
        let s = Scaling {
            slope: 0.5,
            inter: 10.0,
        };
        decode_to_f32(VoxelType::U8, &[4], false, Some(s), &mut out);
        assert_eq!(out, vec![1.0, -1.0, 2.0, 12.0]);
    }

    #[test]
    fn identity_and_zero_slope_mean_no_scaling() {
        assert_eq!(Scaling::from_header(0.0, 5.0), None);
        assert_eq!(Scaling::from_header(1.0, 0.0), None);
        assert_eq!(Scaling::from_header(f32::NAN, 0.0), None);
        assert!(Scaling::from_header(2.0, 0.0).is_some());
    }
}
