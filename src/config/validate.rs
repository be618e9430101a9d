//! Checks that go beyond types: ranges, cross-field consistency. Each failure
//! is `(dotted key, what is allowed)`.

use std::collections::HashSet;

use super::{Config, Layout};

type Check = Result<(), (String, String)>;

fn fail(key: &str, message: impl Into<String>) -> Check {
    Err((key.to_string(), message.into()))
}

fn positive(key: &str, v: f64) -> Check {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        fail(key, format!("is {v}, must be a number > 0"))
    }
}

fn fraction(key: &str, v: f64, allow_zero: bool, allow_one: bool) -> Check {
    let lo_ok = if allow_zero { v >= 0.0 } else { v > 0.0 };
    let hi_ok = if allow_one { v <= 1.0 } else { v < 1.0 };
    if v.is_finite() && lo_ok && hi_ok {
        Ok(())
    } else {
        let lo = if allow_zero { "[0" } else { "(0" };
        let hi = if allow_one { "1]" } else { "1)" };
        fail(key, format!("is {v}, must be in {lo}, {hi}"))
    }
}

fn at_least(key: &str, v: usize, min: usize) -> Check {
    if v >= min {
        Ok(())
    } else {
        fail(key, format!("is {v}, must be at least {min}"))
    }
}

fn widths(key: &str, w: &[usize]) -> Check {
    if w.is_empty() || w.len() > 8 || w.contains(&0) {
        fail(key, "must list 1 to 8 channel counts, each > 0")
    } else {
        Ok(())
    }
}

impl Config {
    pub(super) fn validate(&self) -> Check {
        self.validate_dataset()?;
        self.validate_labels()?;
        self.validate_slicing()?;
        fraction("split.test_fraction", self.split.test_fraction, true, false)?;
        // Shared by projects in different places: relative would mean a
        // different root for each.
        if self.store.root.as_ref().is_some_and(|r| !r.is_absolute()) {
            return fail("store.root", "must be an absolute path");
        }
        self.validate_models()?;
        self.validate_augment()?;
        self.validate_sampling()
    }

    fn validate_dataset(&self) -> Check {
        let d = &self.dataset;
        if d.modalities.is_empty() {
            return fail("dataset.modalities", "must list at least one modality");
        }
        let mut seen = HashSet::new();
        for m in &d.modalities {
            if m.is_empty() || m.contains(['/', '\\']) {
                return fail("dataset.modalities", format!("`{m}` is not a usable name"));
            }
            if !seen.insert(m.to_ascii_lowercase()) {
                return fail("dataset.modalities", format!("`{m}` is listed twice"));
            }
        }
        match d.layout {
            Layout::Brats => {
                if !d.image_globs.is_empty() || d.label_glob.is_some() {
                    return fail(
                        "dataset.image_globs",
                        "globs are for layout = \"generic\"; the brats layout finds files by name",
                    );
                }
                if d.label_token.is_empty() || seen.contains(&d.label_token.to_ascii_lowercase()) {
                    return fail(
                        "dataset.label_token",
                        "must be a token distinct from the modalities",
                    );
                }
            }
            Layout::Generic => {
                if d.image_globs.len() != d.modalities.len() {
                    return fail(
                        "dataset.image_globs",
                        format!(
                            "has {} globs for {} modalities; give one glob per modality, in the same order",
                            d.image_globs.len(),
                            d.modalities.len()
                        ),
                    );
                }
                if d.image_globs
                    .iter()
                    .chain(&d.label_glob)
                    .any(|g| !g.contains(['*', '?']))
                {
                    return fail(
                        "dataset.image_globs",
                        "each glob needs a wildcard that matches the case id",
                    );
                }
            }
        }
        Ok(())
    }

    fn validate_labels(&self) -> Check {
        let l = &self.labels;
        match l.classes.first() {
            None => {
                return fail(
                    "labels.classes",
                    "must list at least the background and one class",
                );
            }
            Some(c) if c.value != 0 => {
                return fail(
                    "labels.classes",
                    "the first class must be the background, value 0",
                );
            }
            _ => {}
        }
        if l.classes.len() < 2 {
            return fail(
                "labels.classes",
                "must list at least the background and one class",
            );
        }
        let mut values = HashSet::new();
        for c in &l.classes {
            if !values.insert(c.value) {
                return fail("labels.classes", format!("value {} appears twice", c.value));
            }
        }
        for r in &l.regions {
            if r.values.is_empty() {
                return fail(
                    "labels.regions",
                    format!("region `{}` has no values", r.name),
                );
            }
            if let Some(v) = r.values.iter().find(|v| !values.contains(v) || **v == 0) {
                return fail(
                    "labels.regions",
                    format!(
                        "region `{}` uses value {v}, which is not a foreground class",
                        r.name
                    ),
                );
            }
        }
        for key in l.notes.keys() {
            if key.parse::<u8>().is_err() {
                return fail(
                    "labels.notes",
                    format!("key `{key}` must be a label value 0–255"),
                );
            }
        }
        Ok(())
    }

    fn validate_slicing(&self) -> Check {
        let s = &self.slicing;
        fraction(
            "slicing.min_brain_fraction",
            s.min_brain_fraction,
            true,
            true,
        )?;
        if s.size.iter().any(|&n| n > 4096) {
            return fail(
                "slicing.size",
                format!("{:?} is too large; at most 4096 per side", s.size),
            );
        }
        if let Some(spacing) = s.spacing
            && spacing.iter().any(|&mm| !(mm.is_finite() && mm >= 0.01))
        {
            return fail(
                "slicing.spacing",
                format!("{spacing:?} must be two spacings in mm, each at least 0.01"),
            );
        }
        // Both networks halve the slice once per level (widths are checked
        // to have at most 8 levels below; clamp so the shift cannot overflow).
        let levels = self.unet.widths.len().max(self.vae.widths.len()).min(8) as u32;
        let multiple = 1usize << levels;
        for (i, &n) in s.size.iter().enumerate() {
            if n < multiple || n % multiple != 0 {
                return fail(
                    "slicing.size",
                    format!(
                        "{} is {n}; it must be a multiple of {multiple} (the networks down-sample {levels} times)",
                        ["height", "width"][i]
                    ),
                );
            }
        }
        Ok(())
    }

    fn validate_models(&self) -> Check {
        let v = &self.vae;
        at_least("vae.z_dim", v.z_dim, 1)?;
        widths("vae.widths", &v.widths)?;
        positive("vae.lr", v.lr)?;
        at_least("vae.batch_size", v.batch_size, 1)?;
        at_least("vae.epochs", v.epochs, 1)?;
        if !(v.kl_weight.is_finite() && v.kl_weight >= 0.0) {
            return fail("vae.kl_weight", "must be a number ≥ 0");
        }
        let u = &self.unet;
        widths("unet.widths", &u.widths)?;
        at_least("unet.bottleneck", u.bottleneck, 1)?;
        positive("unet.lr", u.lr)?;
        at_least("unet.batch_size", u.batch_size, 1)?;
        at_least("unet.epochs_per_round", u.epochs_per_round, 1)?;
        // Holding out half or more would spend more masks on measuring the
        // U-Net than on training it.
        fraction(
            "unet.validation_fraction",
            u.validation_fraction,
            true,
            false,
        )?;
        if u.validation_fraction >= 0.5 {
            return fail("unet.validation_fraction", "must be below 0.5");
        }
        Ok(())
    }

    fn validate_augment(&self) -> Check {
        let a = &self.augment;
        fraction("augment.intensity_scale", a.intensity_scale, true, false)?;
        if !(a.intensity_shift.is_finite() && a.intensity_shift >= 0.0) {
            return fail("augment.intensity_shift", "must be a number ≥ 0");
        }
        if !(a.elastic_sigma.is_finite() && (0.0..=64.0).contains(&a.elastic_sigma)) {
            return fail(
                "augment.elastic_sigma",
                "must be between 0 (off) and 64 pixels",
            );
        }
        if !(2..=64).contains(&a.elastic_points) {
            return fail("augment.elastic_points", "must be between 2 and 64");
        }
        Ok(())
    }

    fn validate_sampling(&self) -> Check {
        let s = &self.sampling;
        positive("sampling.alpha", s.alpha)?;
        if !(s.max_angle_deg > 0.0 && s.max_angle_deg <= 180.0) {
            return fail(
                "sampling.max_angle_deg",
                format!("is {}, must be in (0, 180] degrees", s.max_angle_deg),
            );
        }
        fraction("sampling.initial_fraction", s.initial_fraction, false, true)?;
        fraction("sampling.round_fraction", s.round_fraction, false, true)?;
        at_least("sampling.rounds", s.rounds, 1)?;
        at_least("sampling.dal_models", s.dal_models, 2)?;
        at_least("sampling.dal_picks", s.dal_picks, 1)?;
        at_least("sampling.dal_candidates", s.dal_candidates, s.dal_picks)?;
        positive("sampling.ll_margin", s.ll_margin)?;
        positive("sampling.ll_weight", s.ll_weight)?;
        positive("sampling.kappa", s.kappa)?;
        fraction(
            "sampling.ll_detach_fraction",
            s.ll_detach_fraction,
            true,
            true,
        )?;
        let sim = &self.simulate;
        at_least("simulate.seeds", sim.seeds, 1)?;
        if sim.strategies.is_empty() {
            return fail("simulate.strategies", "must name at least one strategy");
        }
        let mut seen = HashSet::new();
        if let Some(twice) = sim.strategies.iter().find(|s| !seen.insert(**s)) {
            return fail(
                "simulate.strategies",
                format!("lists {} twice", twice.name()),
            );
        }
        Ok(())
    }
}
