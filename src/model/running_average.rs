//! Where batch norm keeps its running averages between passes.
//!
//! burn's `RunningState` averages the values each thread wrote since the
//! last read, and so divides by that count on every read after a write:
//! one scalar division per running average and training step, a kernel
//! launch each on a GPU (36 of a U-Net step's 455 on lavapipe) to divide by
//! one. Our training runs on one thread, so a value written is the value:
//! this cell stores it as it is. Its record is `RunningState`'s (a
//! `Param` with the same id), so checkpoints written with either load
//! into the other.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use burn::module::{
    AutodiffModule, Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper,
    ModuleVisitor, Param, ParamId,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// A tensor a module updates from `&self` during its forward pass.
///
/// Clones share the value, as `RunningState`'s do: a model cloned for
/// training and the original see the same averages until `valid()` or a
/// record copies them out.
#[derive(Clone, Debug)]
pub struct RunningAverage<B: Backend, const D: usize> {
    id: ParamId,
    value: Arc<Mutex<Tensor<B, D>>>,
}

impl<B: Backend, const D: usize> RunningAverage<B, D> {
    pub fn new(value: Tensor<B, D>) -> Self {
        Self::with_id(ParamId::new(), value)
    }

    fn with_id(id: ParamId, value: Tensor<B, D>) -> Self {
        RunningAverage {
            id,
            value: Arc::new(Mutex::new(value)),
        }
    }

    /// The value last written.
    pub fn value(&self) -> Tensor<B, D> {
        self.lock().clone()
    }

    /// Replaces the value; no arithmetic, so no kernel launch.
    pub fn set(&self, value: Tensor<B, D>) {
        *self.lock() = value;
    }

    /// The value, even if a thread panicked while holding it: a tensor
    /// swapped in whole is never half-written.
    fn lock(&self) -> MutexGuard<'_, Tensor<B, D>> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn param(&self) -> Param<Tensor<B, D>> {
        Param::initialized(self.id, self.value())
    }
}

impl<B: Backend, const D: usize> Module<B> for RunningAverage<B, D> {
    type Record = Param<Tensor<B, D>>;

    fn collect_devices(&self, mut devices: Devices<B>) -> Devices<B> {
        let device = self.lock().device();
        if !devices.contains(&device) {
            devices.push(device);
        }
        devices
    }

    fn fork(self, device: &B::Device) -> Self {
        self.to_device(device)
    }

    fn to_device(self, device: &B::Device) -> Self {
        let moved = self.value().to_device(device);
        self.set(moved);
        self
    }

    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        visitor.visit_float(&self.param());
    }

    fn map<M: ModuleMapper<B>>(self, mapper: &mut M) -> Self {
        let (_, mapped, _) = mapper.map_float(self.param()).consume();
        self.set(mapped);
        self
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        let device = self.lock().device();
        self.set(record.val().to_device(&device));
        self.id = record.id;
        self
    }

    fn into_record(self) -> Self::Record {
        self.param()
    }
}

impl<B: AutodiffBackend, const D: usize> AutodiffModule<B> for RunningAverage<B, D> {
    type InnerModule = RunningAverage<B::InnerBackend, D>;

    fn valid(&self) -> Self::InnerModule {
        RunningAverage::with_id(self.id, self.value().inner())
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        RunningAverage::with_id(module.id, Tensor::from_inner(module.value()))
    }
}

impl<B: Backend, const D: usize> fmt::Display for RunningAverage<B, D> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RunningAverage(id={})", self.id)
    }
}

impl<B: Backend, const D: usize> ModuleDisplayDefault for RunningAverage<B, D> {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .add_formatted(&"RunningAverage".to_string())
            .optional()
    }
}

impl<B: Backend, const D: usize> ModuleDisplay for RunningAverage<B, D> {}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::RunningState;
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};

    type Ad = Autodiff<Flex>;
    type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

    /// A module as checkpoints before this cell wrote it.
    #[derive(Module, Debug)]
    struct Before<B: Backend> {
        average: RunningState<Tensor<B, 1>>,
    }

    #[derive(Module, Debug)]
    struct After<B: Backend> {
        average: RunningAverage<B, 1>,
    }

    fn values<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().expect("f32 tensor")
    }

    fn floats(v: &[f32]) -> Tensor<Flex, 1> {
        Tensor::from_floats(v, &Default::default())
    }

    #[test]
    fn checkpoints_load_both_ways_with_the_same_values_and_ids() {
        let device = Default::default();
        let before = Before::<Flex> {
            average: RunningState::new(floats(&[0.0, 0.0, 0.0])),
        };
        // An update pending on this thread, as training leaves it.
        before.average.update(floats(&[1.5, -2.0, 0.25]));
        let record = before.into_record();
        let id = record.average.id;
        let bytes = Bytes::default().record(record, ()).expect("record");
        let record = Recorder::<Flex>::load(&Bytes::default(), bytes, &device).expect("load");
        let after = After::<Flex> {
            average: RunningAverage::new(floats(&[9.0, 9.0, 9.0])),
        }
        .load_record(record);
        assert_eq!(values(after.average.value()), [1.5, -2.0, 0.25]);
        assert_eq!(after.average.id, id);

        after.average.set(floats(&[3.0, 4.0, 5.0]));
        let bytes = Bytes::default()
            .record(after.into_record(), ())
            .expect("record");
        let record = Recorder::<Flex>::load(&Bytes::default(), bytes, &device).expect("load");
        let before = Before::<Flex> {
            average: RunningState::new(floats(&[0.0, 0.0, 0.0])),
        }
        .load_record(record);
        assert_eq!(values(before.average.value()), [3.0, 4.0, 5.0]);
        assert_eq!(before.average.into_record().id, id);
    }

    #[test]
    fn clones_share_the_value_and_valid_copies_it_out() {
        let device = Default::default();
        let average = RunningAverage::<Ad, 1>::new(Tensor::from_floats([1.0, 2.0], &device));
        let clone = average.clone();
        average.set(Tensor::from_floats([3.0, 4.0], &device));
        assert_eq!(values(clone.value()), [3.0, 4.0]);

        let inner = average.valid();
        average.set(Tensor::from_floats([5.0, 6.0], &device));
        assert_eq!(values(inner.value()), [3.0, 4.0]);
        let back = RunningAverage::<Ad, 1>::from_inner(inner);
        assert_eq!(values(back.value()), [3.0, 4.0]);
        assert_eq!(back.id, average.id);
    }
}
