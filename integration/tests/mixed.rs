//! Several containers at once in one daemon: many wasm ones, a native busybox under the
//! wasmpod runtime, and runc beside them.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_integration::{images, with_containerd};

/// 20 hello containers started at once all print their line and exit 0.
#[test]
fn twenty_hellos_at_once() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello")?;
        ctd.import(&img)?;
        let outputs: Vec<Result<_>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|_| s.spawn(|| ctd.run(&img).timeout(Duration::from_secs(120)).exec()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("run thread panicked"))?
                })
                .collect()
        });
        for (i, out) in outputs.into_iter().enumerate() {
            let out = out.with_context(|| format!("container {i}"))?;
            out.success()?;
            ensure!(out.stdout == "hello from wasmpod\n", "container {i}: {out}");
        }
        Ok(())
    })
}

/// Under io.containerd.wasmpod.v1 an ELF entrypoint (busybox sh) runs natively while a
/// wasm task runs, and a runc container runs beside both in the same containerd.
#[test]
fn native_wasm_and_runc_side_by_side() -> Result<()> {
    with_containerd(|ctd| {
        let sleeper = images().wasm("sleeper")?;
        let hello = images().wasm("hello")?;
        let bb = images().busybox()?;
        ctd.import(&sleeper)?.import(&hello)?.import(&bb)?;

        let wasm = ctd.run(&sleeper).detach()?;
        wasm.wait_for_status("RUNNING", Duration::from_secs(15))?;

        let native = ctd.run(&bb).args(["-c", "echo native"]).exec()?;
        native.success()?;
        ensure!(native.stdout == "native\n", "{native}");

        let runc = ctd.run(&bb).runc().args(["-c", "echo runc"]).exec()?;
        runc.success()?;
        ensure!(runc.stdout == "runc\n", "{runc}");

        let out = ctd.run(&hello).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "{out}");

        ensure!(
            wasm.status()?.as_deref() == Some("RUNNING"),
            "the wasm task stopped"
        );
        wasm.kill("SIGKILL")?;
        wasm.wait_for_exit(Duration::from_secs(15))?;
        Ok(())
    })
}

/// The busybox image the wasmpod CLI builds natively is an ordinary image: runc runs it.
#[test]
fn cli_busybox_image_runs_under_runc() -> Result<()> {
    with_containerd(|ctd| {
        let bb = images().busybox()?;
        let out = ctd
            .import(&bb)?
            .run(&bb)
            .runc()
            .args(["-c", "echo from-cli-image; ls /bin/sh"])
            .exec()?;
        out.success()?;
        ensure!(out.stdout == "from-cli-image\n/bin/sh\n", "{out}");
        Ok(())
    })
}
