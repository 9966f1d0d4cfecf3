//! End-to-end build tests: the archive's documents are parsed back and
//! checked against each other and against what containerd/Docker expect.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};

use flate2::read::GzDecoder;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::*;
use crate::layer::sha256_hex;
use crate::layout::{self, DockerManifestEntry};

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn module() -> Vec<u8> {
    wat::parse_str(r#"(module (func (export "_start")))"#).unwrap()
}

fn wasm_spec(dir: &Path, bytes: &[u8], name: &str) -> ImageSpec {
    let path = dir.join("app.wasm");
    std::fs::write(&path, bytes).unwrap();
    let mut spec = ImageSpec::new(Reference::parse(name).unwrap());
    spec.wasm = Some(path);
    spec
}

fn archive_bytes(spec: &ImageSpec) -> Vec<u8> {
    assemble(spec).unwrap().write_to(Vec::new()).unwrap()
}

fn files(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(entry.path().unwrap().display().to_string(), bytes);
    }
    out
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    let bytes = &files[&format!("blobs/sha256/{}", hex_of(digest))];
    assert_eq!(
        format!("sha256:{}", sha256_hex(bytes)),
        digest,
        "blob content matches name"
    );
    bytes
}

struct Parsed {
    index: ImageIndex,
    manifest: ImageManifest,
    config: ImageConfiguration,
    layer_tar: Vec<u8>,
    docker: Vec<DockerManifestEntry>,
}

fn parse(archive: &[u8]) -> Parsed {
    let files = files(archive);
    assert_eq!(files["oci-layout"], layout::OCI_LAYOUT);
    let index = ImageIndex::from_reader(files["index.json"].as_slice()).unwrap();
    let desc = &index.manifests()[0];
    let manifest = ImageManifest::from_reader(blob(&files, desc.digest().as_ref())).unwrap();
    let config =
        ImageConfiguration::from_reader(blob(&files, manifest.config().digest().as_ref())).unwrap();
    let mut layer_tar = Vec::new();
    GzDecoder::new(blob(&files, manifest.layers()[0].digest().as_ref()))
        .read_to_end(&mut layer_tar)
        .unwrap();
    let docker = serde_json::from_slice(&files["manifest.json"]).unwrap();
    Parsed {
        index,
        manifest,
        config,
        layer_tar,
        docker,
    }
}

#[test]
fn documents_have_the_shape_containerd_and_docker_expect() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = wasm_spec(dir.path(), &module(), "hello:latest");
    spec.env = vec!["GREETING=hi".parse().unwrap()];
    spec.args = vec!["--loud".into()];
    spec.labels.insert("org.example/team".into(), "wasm".into());
    let p = parse(&archive_bytes(&spec));

    assert_eq!(p.index.schema_version(), 2);
    assert_eq!(p.index.media_type(), &Some(MediaType::ImageIndex));
    assert_eq!(p.index.manifests().len(), 1);
    let desc = &p.index.manifests()[0];
    assert_eq!(desc.media_type(), &MediaType::ImageManifest);
    let annotations = desc.annotations().clone().unwrap();
    assert_eq!(
        annotations[ANNOTATION_IMAGE_NAME],
        "docker.io/library/hello:latest"
    );
    assert_eq!(annotations[ANNOTATION_REF_NAME], "latest");
    let platform = desc.platform().clone().unwrap();
    assert_eq!(
        (
            platform.os().to_string(),
            platform.architecture().to_string()
        ),
        ("wasip1".into(), "wasm".into())
    );

    assert_eq!(p.manifest.media_type(), &Some(MediaType::ImageManifest));
    assert_eq!(p.manifest.config().media_type(), &MediaType::ImageConfig);
    assert_eq!(p.manifest.layers().len(), 1);
    assert_eq!(
        p.manifest.layers()[0].media_type(),
        &MediaType::ImageLayerGzip
    );

    assert_eq!(p.config.os().to_string(), "wasip1");
    assert_eq!(p.config.architecture().to_string(), "wasm");
    assert_eq!(p.config.rootfs().typ(), "layers");
    assert_eq!(
        p.config.rootfs().diff_ids(),
        &[format!("sha256:{}", sha256_hex(&p.layer_tar))]
    );
    assert_eq!(p.config.created().as_deref(), Some("1970-01-01T00:00:00Z"));
    let config = p.config.config().clone().unwrap();
    assert_eq!(config.entrypoint().clone().unwrap(), ["/app.wasm"]);
    assert_eq!(config.cmd().clone().unwrap(), ["--loud"]);
    assert_eq!(config.env().clone().unwrap(), [DEFAULT_PATH, "GREETING=hi"]);
    assert_eq!(config.working_dir().as_deref(), Some("/"));
    assert_eq!(config.labels().clone().unwrap()["org.example/team"], "wasm");

    let paths: Vec<String> = tar::Archive::new(p.layer_tar.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(paths, ["app.wasm"]);

    let config_hex = hex_of(p.manifest.config().digest().as_ref()).to_owned();
    let layer_hex = hex_of(p.manifest.layers()[0].digest().as_ref()).to_owned();
    assert_eq!(
        p.docker,
        [DockerManifestEntry::new(
            &config_hex,
            vec!["hello:latest".into()],
            &[&layer_hex]
        )]
    );
}

#[test]
fn builds_are_reproducible_and_honour_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = wasm_spec(dir.path(), &module(), "localhost:5000/x:y");
    spec.labels.insert("b".into(), "2".into());
    spec.labels.insert("a".into(), "1".into());
    let first = archive_bytes(&spec);
    assert_eq!(first, archive_bytes(&spec), "same inputs, same bytes");

    spec.epoch = 1_700_000_000;
    let dated = archive_bytes(&spec);
    assert_ne!(first, dated);
    let p = parse(&dated);
    assert_eq!(p.config.created().as_deref(), Some("2023-11-14T22:13:20Z"));
    for entry in tar::Archive::new(p.layer_tar.as_slice()).entries().unwrap() {
        assert_eq!(entry.unwrap().header().mtime().unwrap(), 1_700_000_000);
    }
    for entry in tar::Archive::new(dated.as_slice()).entries().unwrap() {
        assert_eq!(entry.unwrap().header().mtime().unwrap(), 1_700_000_000);
    }
    let annotations = p.index.manifests()[0].annotations().clone().unwrap();
    assert_eq!(annotations[ANNOTATION_IMAGE_NAME], "localhost:5000/x:y");
    assert_eq!(annotations[ANNOTATION_REF_NAME], "y");
    assert_eq!(p.docker[0].repo_tags, ["localhost:5000/x:y"]);
}

#[test]
fn components_get_wasip2_and_platform_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let component = wat::parse_str("(component)").unwrap();
    let mut spec = wasm_spec(dir.path(), &component, "comp:1");
    let built = assemble(&spec).unwrap().built;
    assert_eq!(built.wasm_kind, Some(WasmKind::Component));
    assert_eq!(built.platform.to_string(), "wasip2/wasm");
    assert_eq!(
        parse(&archive_bytes(&spec)).config.os().to_string(),
        "wasip2"
    );

    spec.platform = Some("wasip1/wasm".parse().unwrap());
    assert_eq!(
        assemble(&spec).unwrap().built.platform.to_string(),
        "wasip1/wasm"
    );

    let module_spec = wasm_spec(dir.path(), &module(), "mod:1");
    assert_eq!(
        assemble(&module_spec).unwrap().built.platform.to_string(),
        "wasip1/wasm"
    );
}

#[test]
fn invalid_wasm_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = module();
    broken.truncate(broken.len() - 2);
    let spec = wasm_spec(dir.path(), &broken, "bad:1");
    let out = dir.path().join("out.tar");
    let err = build(&spec, &out).unwrap_err().to_string();
    assert!(
        err.contains("app.wasm") && err.contains("not a valid WebAssembly"),
        "{err}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the input remains");

    let mut missing = spec.clone();
    missing.wasm = Some(dir.path().join("missing.wasm"));
    let err = build(&missing, &out).unwrap_err().to_string();
    assert!(
        err.contains("missing.wasm") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn native_images_need_entrypoint_platform_and_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/busybox"), b"\x7fELF").unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();

    let mut spec = ImageSpec::new(Reference::parse("busybox:test").unwrap());
    let needs = |spec: &ImageSpec| assemble(spec).unwrap_err().to_string();
    assert!(needs(&spec).contains("--entrypoint"));
    spec.entrypoint = Some("/bin/sh".into());
    assert!(needs(&spec).contains("--platform"));
    spec.platform = Some("linux/amd64".parse().unwrap());
    assert!(needs(&spec).contains("--dir"));
    spec.dirs = vec![format!("{}:/", root.display()).parse().unwrap()];
    spec.env = vec!["PATH=/bin".parse().unwrap()];

    let out = dir.path().join("busybox.tar");
    let built = build(&spec, &out).unwrap();
    assert_eq!(built.platform.to_string(), "linux/amd64");
    assert_eq!(built.wasm_kind, None);
    let p = parse(&std::fs::read(&out).unwrap());
    let config = p.config.config().clone().unwrap();
    assert_eq!(config.entrypoint().clone().unwrap(), ["/bin/sh"]);
    assert_eq!(
        config.env().clone().unwrap(),
        ["PATH=/bin"],
        "user PATH replaces the default"
    );
    let mut seen = Vec::new();
    for entry in tar::Archive::new(p.layer_tar.as_slice()).entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        let link = entry.link_name().unwrap().map(|l| l.display().to_string());
        seen.push((
            entry.path().unwrap().display().to_string(),
            h.mode().unwrap() & 0o777,
            link,
        ));
    }
    assert_eq!(
        seen,
        [
            ("bin/".to_owned(), 0o755, None),
            ("bin/busybox".to_owned(), 0o755, None),
            ("bin/sh".to_owned(), 0o777, Some("busybox".to_owned())),
        ]
    );
}

#[test]
fn digest_names_are_refused_and_env_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let hex = "0".repeat(64);
    let spec = wasm_spec(dir.path(), &module(), &format!("x@sha256:{hex}"));
    assert!(matches!(assemble(&spec), Err(BuildError::DigestInName(_))));

    let env: Vec<EnvVar> = ["A=1", "B=2", "A=3"]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(environment(&env), [DEFAULT_PATH, "A=3", "B=2"]);
}

#[test]
fn a_wasm_layer_image_keeps_the_module_raw_and_titled_with_no_filesystem_layer() {
    let dir = tempfile::tempdir().unwrap();
    for media_type in WASM_LAYER_TYPES {
        let mut spec = wasm_spec(dir.path(), &module(), "layered:1");
        spec.wasm_layer = Some(media_type.to_owned());
        let archive = archive_bytes(&spec);
        let files = files(&archive);
        let manifest: ImageManifest = serde_json::from_slice(blob(
            &files,
            &assemble(&spec).unwrap().built.manifest_digest,
        ))
        .unwrap();
        let [layer] = manifest.layers().as_slice() else {
            panic!("expected one layer, got {:?}", manifest.layers());
        };
        assert_eq!(layer.media_type().to_string(), media_type);
        assert_eq!(blob(&files, layer.digest().as_ref()), module());
        let title = layer.annotations().as_ref().unwrap()[ANNOTATION_TITLE].clone();
        assert_eq!(title, "app.wasm");
        let config: ImageConfiguration =
            serde_json::from_slice(blob(&files, manifest.config().digest().as_ref())).unwrap();
        assert!(
            config.rootfs().diff_ids().is_empty(),
            "no tar layer, no diff_id"
        );
        let entrypoint = config.config().as_ref().unwrap().entrypoint().clone();
        assert_eq!(entrypoint, Some(vec!["app.wasm".to_owned()]));
        assert_eq!(config.architecture().to_string(), "wasm");
        // docker's manifest.json lists tar layers only, so it matches the diff_ids.
        let docker: Vec<DockerManifestEntry> =
            serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert!(docker[0].layers.is_empty(), "{:?}", docker[0].layers);
    }
}

#[test]
fn a_wasm_layer_with_dirs_adds_one_tar_layer_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("greeting.txt"), "hi").unwrap();
    let mut spec = wasm_spec(dir.path(), &module(), "layered:2");
    spec.wasm_layer = Some(WASM_LAYER_TYPES[1].to_owned());
    spec.dirs = vec![format!("{}:/data", data.display()).parse().unwrap()];
    let assembled = assemble(&spec).unwrap();
    let media: Vec<_> = assembled
        .image
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    assert_eq!(media, [MEDIA_LAYER_GZIP, WASM_LAYER_TYPES[1]]);
    let config: ImageConfiguration = serde_json::from_slice(&assembled.image.config.bytes).unwrap();
    assert_eq!(config.rootfs().diff_ids().len(), 1);
}

#[test]
fn a_wasm_layer_needs_a_wasm_media_type_a_module_and_an_oci_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = wasm_spec(dir.path(), &module(), "layered:3");
    spec.wasm_layer = Some("application/vnd.oci.image.layer.v1.tar".into());
    let err = assemble(&spec).unwrap_err().to_string();
    assert!(err.contains("is not a wasm layer media type"), "{err}");
    assert!(
        err.contains("application/vnd.wasm.content.layer.v1+wasm"),
        "{err}"
    );

    spec.wasm_layer = Some(WASM_LAYER_TYPES[0].into());
    spec.wasm = None;
    let err = assemble(&spec).unwrap_err().to_string();
    assert!(err.contains("--wasm-layer needs a WASM file"), "{err}");

    let mut spec = wasm_spec(dir.path(), &module(), "layered:3");
    spec.wasm_layer = Some(WASM_LAYER_TYPES[0].into());
    let out = dir.path().join("out.tar");
    let err = build_as(&spec, &out, Format::DockerArchive)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot be written as a docker-archive"),
        "{err}"
    );
    assert!(!out.exists());
}
