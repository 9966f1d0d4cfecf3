//! Builds and handles the OCI images wasmpod runs (the library behind the
//! `wasmpod` CLI).
//!
//! # Layout
//!
//! - [`reference`](mod@reference): image names, normalised the way Docker and containerd
//!   do (`hello` -> `docker.io/library/hello:latest`).
//! - [`spec`]: what to build ([`ImageSpec`]) and parsers for the CLI's
//!   `KEY=VALUE`, `HOST:GUEST` and `OS/ARCH` values.
//! - [`wasm`]: module/component detection and validation.
//! - [`describe`]: imports, exports, WASI version of a `.wasm` (pure).
//! - [`layer`]: reproducible layer tars (sorted, normalised, fixed gzip).
//! - [`layer_check`]: refuses layers of a foreign image whose entries would leave the rootfs
//!   or create devices when a daemon unpacks them (`import`).
//! - [`layout`]: the OCI layout tar with a docker-archive `manifest.json`.
//! - [`image`]: an image in memory (manifest, config, layers) and the
//!   OCI document types.
//! - [`artifact`]: the CNCF wasm OCI artifact (config + raw wasm layer).
//! - [`build`](mod@build): [`ImageSpec`] -> image or artifact.
//! - [`output`]: writes an image as an OCI tar, OCI dir or docker-archive.
//! - [`archive`]: reads a `.wasm`, OCI tar/dir or docker-archive back.
//! - [`inspect`]: the `inspect` report (JSON and text).
//! - [`registry`]: push/pull over the OCI distribution API (auth, retries).
//! - [`import`]: loads an archive into containerd (`ctr`) or Docker.
//! - [`install`]: registers the shim with containerd / Docker (`wasmpod install`).
//! - [`error`]: the [`BuildError`] type.
//!
//! The image archive is byte-for-byte reproducible: the same inputs and
//! `SOURCE_DATE_EPOCH` give the same tar and digests (for one build of this
//! crate; the gzip bytes depend on the deflate implementation pinned in
//! `Cargo.lock`).

pub mod archive;
pub mod artifact;
pub mod build;
pub mod describe;
pub mod error;
pub mod image;
pub mod import;
pub mod inspect;
pub mod install;
pub mod layer;
pub mod layer_check;
pub mod layout;
pub mod output;
pub mod reference;
pub mod registry;
pub mod spec;
pub mod wasm;

#[cfg(test)]
mod testdata;

pub use build::{assemble, build, build_as, Assembled, Built};
pub use error::BuildError;
pub use image::{Form, Image};
pub use output::Format;
pub use reference::Reference;
pub use spec::{Annotation, DirMapping, EnvVar, ImageSpec, Label, Platform};
