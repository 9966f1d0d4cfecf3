//! Builds and handles the OCI images wasmpod runs (the library behind the
//! `wasmpod` CLI).
//!
//! # Layout
//!
//! - [`reference`]: image names, normalised the way Docker and containerd
//!   do (`hello` -> `docker.io/library/hello:latest`).
//! - [`spec`]: what to build ([`ImageSpec`]) and parsers for the CLI's
//!   `KEY=VALUE`, `HOST:GUEST` and `OS/ARCH` values.
//! - [`wasm`]: module/component detection and validation.
//! - [`layer`]: reproducible layer tars (sorted, normalised, fixed gzip).
//! - [`layout`]: the OCI layout tar with a docker-archive `manifest.json`.
//! - [`build`]: [`ImageSpec`] -> config, manifest, index -> archive.
//! - [`error`]: the [`BuildError`] type.
//!
//! The image archive is byte-for-byte reproducible: the same inputs and
//! `SOURCE_DATE_EPOCH` give the same tar and digests (for one build of this
//! crate; the gzip bytes depend on the deflate implementation pinned in
//! `Cargo.lock`).

pub mod build;
pub mod error;
pub mod layer;
pub mod layout;
pub mod reference;
pub mod spec;
pub mod wasm;

pub use build::{assemble, build, Assembled, Built};
pub use error::BuildError;
pub use reference::Reference;
pub use spec::{DirMapping, EnvVar, ImageSpec, Label, Platform};
