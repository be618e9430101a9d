//! What can be wrong with an evaluation's inputs, said so the caller can fix
//! the call rather than get a silently wrong number.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{what} has {got} values, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("voxel spacing {0:?} mm must be finite and positive on every axis")]
    Spacing([f64; 3]),
    #[error("volume dimensions {0:?} overflow the address space")]
    Dims([usize; 3]),
    #[error("percentile {0} is outside [0, 100]")]
    Percentile(f64),
    #[error("value {index} of {what} is not finite ({value})")]
    NotFinite {
        what: &'static str,
        index: usize,
        value: f64,
    },
}
