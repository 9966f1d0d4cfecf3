//! The image a container was created from, read through containerd's API: its raw wasm layers.
//!
//! containerd does not unpack layers of the wasm media types (`application/wasm`, ...) into the
//! snapshot; they stay in its content store. [`ImageSource`] finds the container's image
//! (containers service), its manifest (images and content services) and reads those layers.
//! [`manifest`] holds the pure rules. Nothing here knows wasmtime or Linux containers.

mod content;
pub mod manifest;

pub use content::ImageSource;

/// One raw wasm layer of an image, read and checked against its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct WasmLayer {
    /// The layer's media type.
    pub media_type: String,
    /// `sha256:...` of the bytes.
    pub digest: String,
    /// The file name from the `org.opencontainers.image.title` annotation.
    pub title: Option<String>,
    /// The module or component.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for WasmLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmLayer")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("title", &self.title)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl WasmLayer {
    /// How the layer is named in messages and paths: its title, else its digest.
    pub fn name(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.digest)
    }
}

/// Reading the image's wasm layers failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// containerd could not be asked.
    #[error("cannot reach containerd at {address} to read the image's wasm layers: {reason}")]
    Connect {
        /// containerd's socket.
        address: String,
        /// Why.
        reason: String,
    },
    /// A containerd call failed.
    #[error("containerd: {what}: {reason}")]
    Containerd {
        /// The call, with what it was about.
        what: String,
        /// containerd's message.
        reason: String,
    },
    /// A manifest or index is not valid JSON of its kind.
    #[error("the image's {what} is not valid: {reason}")]
    BadDocument {
        /// `manifest` or `index`.
        what: &'static str,
        /// The parse error.
        reason: String,
    },
    /// A blob read from the content store does not match its digest.
    #[error("wasm layer {digest} read from containerd does not match its digest (got {actual})")]
    DigestMismatch {
        /// The descriptor's digest.
        digest: String,
        /// The digest of the bytes read.
        actual: String,
    },
    /// Several wasm layers and `args[0]` names none of them.
    #[error(
        "the image has {} wasm layers and args[0] {program:?} names none of them \
         (layer titles: {})", titles.len(), titles.join(", ")
    )]
    NoLayerFor {
        /// `args[0]`, without `#export`.
        program: String,
        /// The titles (or digests) of the layers.
        titles: Vec<String>,
    },
}
