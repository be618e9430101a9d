//! Presets load with the paper's settings; bad files are reported by file,
//! key and what is allowed.

use std::path::PathBuf;

use nextslice::config::{
    Config, ConfigError, DeviceSpec, GradientStep, Preset, SliceAxis, Strategy,
};

use super::common::nextslice;

#[test]
fn presets_carry_the_papers_settings() {
    for preset in Preset::ALL {
        let c = Config::preset(preset);
        assert_eq!(c.sampling.strategy, Strategy::Gradient);
        assert_eq!(c.sampling.alpha, 1e-3);
        assert_eq!(c.sampling.max_angle_deg, 60.0);
        assert_eq!(c.device.kind, DeviceSpec::Auto);
        // Learning loss as §3.2 set it: ξ = 0.5, λ = 1, detached after 30 of 50.
        assert_eq!((c.sampling.ll_margin, c.sampling.ll_weight), (0.5, 1.0));
        assert_eq!(c.sampling.ll_detach_at(50), 30);
        assert_eq!(c.sampling.step, GradientStep::Calibrated);
        assert_eq!(c.sampling.kappa, 1.0);
    }
    let brats = Config::preset(Preset::Brats2019);
    assert_eq!(brats.vae.z_dim, 3);
    assert_eq!(
        (brats.vae.lr, brats.vae.batch_size, brats.vae.epochs),
        (1e-4, 16, 50)
    );
    assert_eq!(brats.unet.widths, [32, 64, 128, 256]);
    assert_eq!(
        (brats.unet.bottleneck, brats.unet.lr, brats.unet.batch_size),
        (512, 1e-3, 32)
    );
    assert_eq!(brats.unet.epochs_per_round, 10);
    assert_eq!(
        (
            brats.sampling.initial_fraction,
            brats.sampling.round_fraction
        ),
        (0.005, 0.01)
    );
    assert_eq!(brats.labels.values(), [0, 1, 2, 4]);
    let regions: Vec<_> = brats
        .labels
        .evaluation_regions()
        .into_iter()
        .map(|r| (r.name, r.values))
        .collect();
    assert_eq!(
        regions,
        [
            ("WT".into(), vec![1, 2, 4]),
            ("TC".into(), vec![1, 4]),
            ("ET".into(), vec![4])
        ]
    );
    assert!(brats.labels.explain_unexpected(3).contains("BraTS 2021"));
    let malc = Config::preset(Preset::Malc);
    assert_eq!(malc.vae.z_dim, 2);
    assert_eq!(malc.slicing.axis, SliceAxis::Coronal);
    assert_eq!(malc.labels.evaluation_regions().len(), 25);
}

fn overlay_error(text: &str) -> (String, ConfigError) {
    let err = Config::preset_with(Preset::Brats2019, "my.toml", text).unwrap_err();
    (err.to_string(), err)
}

#[test]
fn unknown_keys_name_the_file_the_key_and_the_choices() {
    let (text, err) = overlay_error("[sampling]\nalpah = 0.1\n");
    assert!(matches!(err, ConfigError::Invalid { .. }));
    assert!(text.starts_with("my.toml: key `sampling"), "{text}");
    assert!(
        text.contains("alpah") && text.contains("expected one of") && text.contains("`alpha`"),
        "{text}"
    );

    let (text, _) = overlay_error("[samplin]\nalpha = 0.1\n");
    assert!(
        text.contains("samplin") && text.contains("`sampling`"),
        "{text}"
    );
}

#[test]
fn bad_values_say_what_is_allowed() {
    let (text, _) = overlay_error("[slicing]\naxis = \"diagonal\"\n");
    assert!(
        text.contains("slicing.axis") && text.contains("`axial`, `coronal`, `sagittal`"),
        "{text}"
    );
    let (text, _) = overlay_error("[sampling]\nalpha = -1.0\n");
    assert_eq!(
        text,
        "my.toml: key `sampling.alpha`: is -1, must be a number > 0"
    );
    let (text, _) = overlay_error("[sampling]\nmax_angle_deg = 270.0\n");
    assert!(text.contains("(0, 180]"), "{text}");
    let (text, _) = overlay_error("[slicing]\nsize = [250, 256]\n");
    assert!(
        text.contains("slicing.size") && text.contains("multiple of 16"),
        "{text}"
    );
    let (text, _) = overlay_error("[device]\nkind = \"gpu\"\n");
    assert!(
        text.contains("device.kind") && text.contains("cuda:N"),
        "{text}"
    );
    let (text, _) = overlay_error("[vae]\nz_dim = \"three\"\n");
    assert!(
        text.contains("vae.z_dim") && text.contains("invalid type"),
        "{text}"
    );
    let (text, _) = overlay_error("[labels]\nclasses = [{ value = 1, name = \"x\" }]\n");
    assert!(
        text.contains("labels.classes") && text.contains("background"),
        "{text}"
    );
    let (text, _) = overlay_error("[slicing]\nspacing = [0.0, 1.0]\n");
    assert!(
        text.contains("slicing.spacing") && text.contains("at least 0.01"),
        "{text}"
    );
    let (text, _) = overlay_error("[unet]\nvalidation_fraction = 0.5\n");
    assert!(
        text.contains("unet.validation_fraction") && text.contains("below 0.5"),
        "{text}"
    );
    let (text, _) = overlay_error("[store]\nroot = \"relative/stores\"\n");
    assert!(
        text.contains("store.root") && text.contains("absolute"),
        "{text}"
    );
    let (text, _) = overlay_error("[sampling\n");
    assert!(text.starts_with("my.toml: not valid TOML"), "{text}");
}

#[test]
fn resolved_configs_round_trip_through_toml() {
    let mut c = Config::preset(Preset::Malc);
    c.dataset.root = Some(PathBuf::from("/data/malc"));
    c.device.kind = DeviceSpec::Cuda(1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("project.toml");
    std::fs::write(&file, c.to_toml()).unwrap();
    assert_eq!(Config::from_file(&file).unwrap(), c);
}

#[test]
fn the_users_config_file_is_laid_over_the_preset_and_blamed_for_its_errors() {
    let home = tempfile::tempdir().unwrap();
    let user = home.path().join("nextslice/config.toml");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(
        &user,
        "[device]\nkind = \"cpu\"\n[store]\ndtype = \"f32\"\n",
    )
    .unwrap();
    let extra = home.path().join("extra.toml");
    std::fs::write(&extra, "[vae]\nepochs = 3\n").unwrap();
    let out = nextslice()
        .env("XDG_CONFIG_HOME", home.path())
        .args([
            "config",
            "--preset",
            "brats2019",
            "--config",
            extra.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let resolved: toml::Table = text.parse().unwrap();
    assert_eq!(resolved["device"]["kind"].as_str(), Some("cpu"));
    assert_eq!(resolved["store"]["dtype"].as_str(), Some("f32"));
    assert_eq!(resolved["vae"]["epochs"].as_integer(), Some(3));
    assert_eq!(resolved["vae"]["z_dim"].as_integer(), Some(3));

    std::fs::write(&user, "[store]\ndtype = \"f8\"\n").unwrap();
    let out = nextslice()
        .env("XDG_CONFIG_HOME", home.path())
        .args(["config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&user.display().to_string()) && err.contains("store.dtype"),
        "{err}"
    );
}

#[test]
fn a_round_trains_for_at_least_min_steps_and_epochs_still_count_when_more() {
    let demo = Config::preset(Preset::Demo).unet;
    assert_eq!((demo.batch_size, demo.epochs_per_round), (8, 20));
    assert_eq!(demo.min_steps_per_round, 100);
    // 9 slices are 2 batches an epoch: 50 epochs make the 100 steps.
    assert_eq!(demo.epochs_for(9), 50);
    // 400 slices are 50 batches: the 20 epochs already give 1000 steps.
    assert_eq!(demo.epochs_for(400), 20);
    // An absolute detach epoch overrides the fraction.
    let c = Config::preset_with(
        Preset::Demo,
        "<test>",
        "[sampling]\nll_detach_epoch = 7\n[unet]\nmin_steps_per_round = 0\n",
    )
    .unwrap();
    assert_eq!(c.sampling.ll_detach_at(50), 7);
    assert_eq!(c.unet.epochs_for(9), 20);
}
