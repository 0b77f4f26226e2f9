//! What a `/tmp` volume costs, step by step, and what a cold start pays with the ready pool.
//!
//!     cargo run --release -p kappa-runtime --example tmp_volume_costs [DIR] [ROUNDS]
//!
//! Needs root, loop devices and mke2fs. DIR (default: a new directory under /var/tmp) must be on
//! the file system that will hold the data directory; it is emptied and removed afterwards.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kappa_runtime::ephemeral_storage::volume::{Formatter, Volume, image_mib};
use kappa_runtime::ephemeral_storage::{TmpOwner, TmpSettings, TmpStorage};
use kappa_sandbox::loop_device::{self, AttachOptions};
use nix::mount::{MntFlags, MsFlags};

const SIZE_MIB: u32 = 512;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    let rounds: usize = args.next().map_or(Ok(30), |r| r.parse())?;
    let dir = tempfile::Builder::new()
        .prefix("kappa-tmp-costs-")
        .tempdir_in(&base)?;
    let formatter = Formatter::find().ok_or("mke2fs not found")?;

    let mut steps = Steps::default();
    for round in 0..rounds {
        let image = dir.path().join(format!("{round}.img"));
        let target = dir.path().join(round.to_string());
        let started = Instant::now();
        std::fs::File::create_new(&image)?.set_len(image_mib(SIZE_MIB) << 20)?;
        steps.create.push(started.elapsed());

        let started = Instant::now();
        formatter.format(&image)?;
        steps.format.push(started.elapsed());

        let started = Instant::now();
        let device = loop_device::attach(
            &image,
            AttachOptions {
                autoclear: false,
                direct_io: true,
            },
        )?;
        steps.attach.push(started.elapsed());

        let started = Instant::now();
        std::fs::create_dir(&target)?;
        nix::mount::mount(
            Some(&device),
            &target,
            Some("ext4"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )?;
        steps.mount.push(started.elapsed());

        let started = Instant::now();
        nix::mount::umount2(&target, MntFlags::MNT_DETACH)?;
        std::fs::remove_dir(&target)?;
        loop_device::detach(&device)?;
        std::fs::remove_file(&image)?;
        steps.teardown.push(started.elapsed());
    }

    // What a cold start pays: a take from the ready pool, or, when none is ready, making one
    // (format, attach, mount, prepare the root).
    let storage = TmpStorage::open(
        &dir.path().join("environments"),
        TmpSettings {
            volumes: true,
            owner: Some(TmpOwner::RUNTIME_USER),
        },
    )?;
    let mut taken_ready = Vec::new();
    let mut made_on_demand = Vec::new();
    for round in 0..rounds {
        wait_for_ready(&storage, 2).await;
        let started = Instant::now();
        let tmp = storage.take(SIZE_MIB).await?;
        taken_ready.push(started.elapsed());
        drop(tmp);
        let started = Instant::now();
        let mut volume = Volume::create(
            dir.path(),
            &format!("made-{round}"),
            SIZE_MIB,
            TmpOwner::RUNTIME_USER,
            &formatter,
        )?;
        made_on_demand.push(started.elapsed());
        volume.destroy();
    }
    storage.shut_down().await;

    println!(
        "{SIZE_MIB} MiB volume (image {} MiB), {rounds} rounds, in {}",
        image_mib(SIZE_MIB),
        base.display()
    );
    println!("| Step | p50 (ms) | p90 (ms) | max (ms) |");
    println!("|---|---:|---:|---:|");
    for (name, samples) in [
        ("create sparse image", &mut steps.create),
        (
            "format (a copy of the size's template; the first one runs mke2fs)",
            &mut steps.format,
        ),
        ("attach (LOOP_CONFIGURE)", &mut steps.attach),
        ("mount", &mut steps.mount),
        ("unmount + detach + delete", &mut steps.teardown),
        ("cold start: take a ready volume", &mut taken_ready),
        ("cold start: make one (pool empty)", &mut made_on_demand),
    ] {
        println!("| {name} | {} |", summary(samples));
    }
    Ok(())
}

#[derive(Default)]
struct Steps {
    create: Vec<Duration>,
    format: Vec<Duration>,
    attach: Vec<Duration>,
    mount: Vec<Duration>,
    teardown: Vec<Duration>,
}

/// Wait until the pool holds `count` ready volumes of the default size again.
async fn wait_for_ready(storage: &TmpStorage, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.ready_count(SIZE_MIB) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    format!("{:.3} | {:.3} | {:.3}", at(0.5), at(0.9), at(1.0))
}
