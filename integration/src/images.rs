//! Test images as OCI-layout tars, built once per test process and cached in a temp dir.
//!
//! Wasm images come from the programs in `test-images/out` through the wasmpod CLI
//! (`wasmpod image build`); the bad inputs and busybox use its native form (`--dir`,
//! `--entrypoint`, `--platform`). One busybox image is built with umoci instead, so the
//! harness can be checked against runc without relying on the CLI under test. The cache
//! dir is removed when the process exits.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::paths;
use crate::process::run_with_timeout;

const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Applets linked in the busybox images' `/bin`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "ls", "id", "env", "pwd", "true", "false", "mkdir", "rm",
    "touch", "wc", "head", "grep", "printf", "uname", "tty", "stty",
];

/// An image tar ready for `ctr images import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    /// The reference it was tagged with (`wasmpod-test/<name>:latest`).
    pub name: String,
    /// The OCI-layout tar.
    pub tar: PathBuf,
    /// The image's entrypoint (argv\[0\] that [`crate::Run::args`] prepends).
    pub entrypoint: String,
    /// A host directory holding the same files as the image's rootfs, for runs that cannot
    /// use the image itself (see [`crate::Run::user`]); `None` when there is none.
    pub rootfs: Option<PathBuf>,
}

type Cache = HashMap<String, Result<Arc<TestImage>, String>>;

/// The per-process image cache; get it with [`images`].
#[derive(Debug)]
pub struct Images {
    dir: PathBuf,
    built: Mutex<Cache>,
}

static IMAGES: OnceLock<Images> = OnceLock::new();

extern "C" fn remove_cache_dir() {
    if let Some(images) = IMAGES.get() {
        let _ = fs::remove_dir_all(&images.dir);
    }
}

/// The image cache of this test process.
pub fn images() -> &'static Images {
    IMAGES.get_or_init(|| {
        // SAFETY: registers a plain extern "C" fn with no captured state.
        unsafe {
            libc::atexit(remove_cache_dir);
        }
        let dir = std::env::temp_dir().join(format!("wasmpod-it-images-{}", std::process::id()));
        Images {
            dir,
            built: Mutex::new(HashMap::new()),
        }
    })
}

/// Lower-case alphanumerics and single dashes: usable as a dir name and in a reference.
fn sanitize(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn image_name(key: &str) -> String {
    format!("wasmpod-test/{key}:latest")
}

impl Images {
    /// Builds (once) the image stored under `key`; failures are cached too and repeated.
    fn get(
        &self,
        key: &str,
        build: impl FnOnce(&Path) -> Result<TestImage>,
    ) -> Result<Arc<TestImage>> {
        let mut cache = self
            .built
            .lock()
            .map_err(|_| anyhow!("image cache poisoned"))?;
        let entry = cache.entry(key.to_string()).or_insert_with(|| {
            let work = self.dir.join(key);
            fs::create_dir_all(&work)
                .map_err(anyhow::Error::from)
                .and_then(|()| build(&work))
                .map(Arc::new)
                .map_err(|e| format!("building test image {key}: {e:#}"))
        });
        entry.clone().map_err(|e| anyhow!(e))
    }

    /// A test program from `test-images/out/<program>.wasm`.
    ///
    /// # Errors
    /// When it has not been built (`make -C test-images`).
    pub fn program(program: &str) -> Result<PathBuf> {
        let p = paths::programs_dir().join(format!("{program}.wasm"));
        if !p.is_file() {
            bail!(
                "test program {} is missing: build the test programs with `make -C test-images` \
                 (or set WASMPOD_TEST_PROGRAMS)",
                p.display()
            );
        }
        Ok(p)
    }

    fn cli_build(work: &Path, name: &str, args: &[String]) -> Result<PathBuf> {
        let cli = paths::require_cli()?;
        let tar = work.join("image.tar");
        let mut cmd = Command::new(cli);
        cmd.args(["image", "build"])
            .args(args)
            .arg("-t")
            .arg(name)
            .arg("-o")
            .arg(&tar);
        run_with_timeout(&mut cmd, BUILD_TIMEOUT)?.success()?;
        if !tar.is_file() {
            bail!("wasmpod image build wrote no {}", tar.display());
        }
        Ok(tar)
    }

    /// The wasm image of `program`, entrypoint `/app.wasm`, with extra CLI flags.
    ///
    /// # Errors
    /// When the program or the CLI is missing or the build fails.
    pub fn wasm_with(&self, program: &str, flags: &[&str]) -> Result<Arc<TestImage>> {
        let key = sanitize(
            &[program]
                .iter()
                .chain(flags)
                .copied()
                .collect::<Vec<_>>()
                .join("-"),
        );
        self.get(&key, |work| {
            let name = image_name(&key);
            let wasm = Self::program(program)?;
            let root = work.join("root");
            fs::create_dir_all(&root)?;
            fs::copy(&wasm, root.join("app.wasm"))?;
            let mut args = vec![wasm.display().to_string()];
            args.extend(flags.iter().map(|f| f.to_string()));
            Ok(TestImage {
                tar: Self::cli_build(work, &name, &args)?,
                name,
                entrypoint: "/app.wasm".into(),
                rootfs: Some(root),
            })
        })
    }

    /// The wasm image of `program` (`hello`, `printer`, `sleeper`, ...).
    ///
    /// # Errors
    /// See [`Images::wasm_with`].
    pub fn wasm(&self, program: &str) -> Result<Arc<TestImage>> {
        self.wasm_with(program, &[])
    }

    /// `program` as a raw wasm layer of `media_type` (`wasmpod image build --wasm-layer`):
    /// no filesystem layer, entrypoint `<program>.wasm` (the layer's title), or with
    /// `dir` = `(host, guest)` one tar layer of those files too.
    ///
    /// # Errors
    /// When the program or the CLI is missing or the build fails.
    pub fn wasm_layer(
        &self,
        program: &str,
        media_type: &str,
        dir: Option<(&Path, &str)>,
    ) -> Result<Arc<TestImage>> {
        let key = sanitize(&format!(
            "layer-{program}-{media_type}-{}",
            dir.map(|d| d.1).unwrap_or_default()
        ));
        self.get(&key.clone(), |work| {
            let name = image_name(&key);
            let mut args = vec![
                Self::program(program)?.display().to_string(),
                "--wasm-layer".into(),
                media_type.into(),
            ];
            if let Some((host, guest)) = dir {
                args.extend(["--dir".into(), format!("{}:{guest}", host.display())]);
            }
            Ok(TestImage {
                tar: Self::cli_build(work, &name, &args)?,
                name,
                entrypoint: format!("{program}.wasm"),
                rootfs: None,
            })
        })
    }

    /// `program` as the CNCF wasm OCI artifact (`wasmpod image build --artifact`). It has no
    /// entrypoint: a run names `<program>.wasm`, the layer's title.
    ///
    /// # Errors
    /// When the program or the CLI is missing or the build fails.
    pub fn artifact(&self, program: &str) -> Result<Arc<TestImage>> {
        let key = sanitize(&format!("artifact-{program}"));
        self.get(&key.clone(), |work| {
            let name = image_name(&key);
            let args = [
                Self::program(program)?.display().to_string(),
                "--artifact".into(),
            ];
            Ok(TestImage {
                tar: Self::cli_build(work, &name, &args)?,
                name,
                entrypoint: format!("{program}.wasm"),
                rootfs: None,
            })
        })
    }

    /// The printer image, whose config adds `IMAGE_VAR=from-image` to the environment.
    ///
    /// # Errors
    /// See [`Images::wasm_with`].
    pub fn printer(&self) -> Result<Arc<TestImage>> {
        self.wasm_with("printer", &["--env", "IMAGE_VAR=from-image"])
    }

    /// An image whose entrypoint `/app.wasm` is `test-images/out/bad/<bad>.wasm`, built with
    /// the CLI's native form so the CLI does not reject the file first.
    ///
    /// # Errors
    /// When the file or the CLI is missing or the build fails.
    pub fn bad(&self, bad: &str) -> Result<Arc<TestImage>> {
        let key = format!("bad-{bad}");
        self.get(&key.clone(), |work| {
            let src = Self::program(&format!("bad/{bad}"))?;
            let root = work.join("root");
            fs::create_dir_all(&root)?;
            fs::copy(&src, root.join("app.wasm"))?;
            Self::native_build(work, &key, root, "/app.wasm", "wasip1/wasm")
        })
    }

    /// A wasip1 image whose rootfs holds exactly `files` (path in the rootfs -> bytes),
    /// entrypoint `/app.wasm` (which `files` must name), built with the CLI's native form;
    /// cached under `key`. For containers that need more than one program, such as a
    /// long-running `/app.wasm` and a tool to exec next to it.
    ///
    /// # Errors
    /// When `files` has no `/app.wasm`, a path is not absolute, or the build fails.
    pub fn wasm_rootfs(&self, key: &str, files: &[(&str, &[u8])]) -> Result<Arc<TestImage>> {
        let key = sanitize(key);
        if !files.iter().any(|(p, _)| *p == "/app.wasm") {
            bail!("image {key}: no /app.wasm among the files");
        }
        self.get(&key.clone(), |work| {
            let root = work.join("root");
            for (path, bytes) in files {
                let rel = path
                    .strip_prefix('/')
                    .ok_or_else(|| anyhow!("{path} is not absolute"))?;
                let dest = root.join(rel);
                if let Some(dir) = dest.parent() {
                    fs::create_dir_all(dir)?;
                }
                fs::write(&dest, bytes)?;
            }
            Self::native_build(work, &key, root, "/app.wasm", "wasip1/wasm")
        })
    }

    /// `wasmpod image build --dir ROOT:/ --entrypoint E --platform P`, tagged for `key`.
    fn native_build(
        work: &Path,
        key: &str,
        root: PathBuf,
        entrypoint: &str,
        platform: &str,
    ) -> Result<TestImage> {
        let name = image_name(key);
        let args = [
            "--dir".into(),
            format!("{}:/", root.display()),
            "--entrypoint".into(),
            entrypoint.into(),
            "--platform".into(),
            platform.into(),
        ];
        Ok(TestImage {
            tar: Self::cli_build(work, &name, &args)?,
            name,
            entrypoint: entrypoint.into(),
            rootfs: Some(root),
        })
    }

    /// A linux/amd64 busybox image built by the wasmpod CLI; entrypoint `/bin/sh`.
    ///
    /// # Errors
    /// When `/bin/busybox` (busybox-static) or the CLI is missing, or the build fails.
    pub fn busybox(&self) -> Result<Arc<TestImage>> {
        self.get("busybox", |work| {
            let root = busybox_root(work)?;
            Self::native_build(work, "busybox", root, "/bin/sh", "linux/amd64")
        })
    }

    /// The same busybox rootfs packed by umoci, independent of the CLI under test.
    ///
    /// # Errors
    /// When busybox or umoci is missing, or umoci fails.
    pub fn busybox_umoci(&self) -> Result<Arc<TestImage>> {
        self.get("busybox-umoci", |work| {
            let root = busybox_root(work)?;
            let layout = work.join("layout");
            let tagged = format!("{}:latest", layout.display());
            let (layout_s, bin_s) = (
                layout.display().to_string(),
                root.join("bin").display().to_string(),
            );
            let steps: [&[&str]; 4] = [
                &["init", "--layout", &layout_s],
                &["new", "--image", &tagged],
                &["insert", "--image", &tagged, &bin_s, "/bin"],
                &[
                    "config",
                    "--image",
                    &tagged,
                    "--config.entrypoint",
                    "/bin/sh",
                    "--config.env",
                    "PATH=/bin",
                ],
            ];
            for step in steps {
                run_with_timeout(Command::new("umoci").args(step), BUILD_TIMEOUT)?.success()?;
            }
            let name = image_name("busybox-umoci");
            name_index(&layout.join("index.json"), &name)?;
            let tar = work.join("image.tar");
            let mut cmd = Command::new("tar");
            cmd.arg("-C").arg(&layout).arg("-cf").arg(&tar).arg(".");
            run_with_timeout(&mut cmd, BUILD_TIMEOUT)?.success()?;
            Ok(TestImage {
                name,
                tar,
                entrypoint: "/bin/sh".into(),
                rootfs: Some(root),
            })
        })
    }
}

/// `work/root/bin/busybox` plus a symlink per applet.
fn busybox_root(work: &Path) -> Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox is missing: install busybox-static (scripts/install-deps.sh)");
    }
    let bin = work.join("root/bin");
    fs::create_dir_all(&bin)?;
    fs::copy(busybox, bin.join("busybox")).context("copy busybox")?;
    for applet in BUSYBOX_APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    Ok(work.join("root"))
}

/// Names the layout's manifest so `ctr images import` stores it as `name`.
fn name_index(index: &Path, name: &str) -> Result<()> {
    let mut idx: serde_json::Value = serde_json::from_slice(&fs::read(index)?)?;
    let manifests = idx
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| anyhow!("{} has no manifests", index.display()))?;
    for m in manifests {
        m["annotations"]["io.containerd.image.name"] = serde_json::Value::from(name);
    }
    fs::write(index, serde_json::to_vec(&idx)?)?;
    Ok(())
}
