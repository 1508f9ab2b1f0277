//! Container images without a registry or a build tool: a root file system assembled from files of this
//! machine, written as a single-layer (uncompressed) OCI image archive (`oci-layout`, `index.json`, `blobs/sha256/…`) that
//! `ctr images import` reads. containerd names the image after the index's `io.containerd.image.name`
//! annotation.
//!
//! The runtime contract (user, entrypoint, command, exposed ports) can be read from a Dockerfile's final
//! stage ([`RuntimeConfig::from_dockerfile`]), so an image made here runs the way the real one would.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, PlatformBuilder, RootFsBuilder, Sha256Digest,
};
use sha2::{Digest as _, Sha256};

use crate::process::run;

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a container of the image runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeConfig {
    /// `uid[:gid]` or a user name of the image's /etc/passwd.
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `port/protocol`, e.g. `8443/tcp`.
    pub exposed_ports: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

impl RuntimeConfig {
    /// The final stage's `USER`, `ENTRYPOINT`, `CMD`, `EXPOSE`, `ENV` and `WORKDIR` (what the image's
    /// configuration gets from the Dockerfile itself; a base image's own settings are not known here).
    /// `ENTRYPOINT` and `CMD` must be in exec (JSON) form: a distroless image has no shell to run the
    /// shell form.
    pub fn from_dockerfile(text: &str) -> Result<Self> {
        let mut config = None;
        for (number, instruction) in instructions(text) {
            let (keyword, rest) = instruction.split_once(char::is_whitespace).unwrap_or((&instruction, ""));
            let rest = rest.trim();
            let at = || format!("Dockerfile line {number}: {instruction}");
            if keyword.eq_ignore_ascii_case("FROM") {
                config = Some(RuntimeConfig { env: vec![PATH_ENV.to_string()], ..RuntimeConfig::default() });
                continue;
            }
            let Some(config) = config.as_mut() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "USER" => config.user = Some(rest.to_string()),
                "WORKDIR" => config.working_dir = Some(rest.to_string()),
                "EXPOSE" => config.exposed_ports.extend(
                    rest.split_whitespace()
                        .map(|p| if p.contains('/') { p.to_string() } else { format!("{p}/tcp") }),
                ),
                "ENV" => {
                    let pairs: Vec<String> = if rest.contains('=') {
                        rest.split_whitespace().map(|kv| kv.replace('"', "")).collect()
                    } else {
                        let (k, v) =
                            rest.split_once(char::is_whitespace).ok_or_else(|| anyhow!("{}", at()))?;
                        vec![format!("{k}={}", v.trim())]
                    };
                    for pair in pairs {
                        let key = pair.split('=').next().unwrap_or_default().to_string();
                        config.env.retain(|e| e.split('=').next() != Some(&key));
                        config.env.push(pair);
                    }
                }
                "ENTRYPOINT" | "CMD" => {
                    let argv: Vec<String> = serde_json::from_str(rest)
                        .with_context(|| format!("{}: only the exec (JSON array) form is supported", at()))?;
                    if keyword.eq_ignore_ascii_case("CMD") {
                        config.cmd = argv;
                    } else {
                        config.entrypoint = argv;
                        // As in Docker: a new ENTRYPOINT drops a CMD set before it.
                        config.cmd.clear();
                    }
                }
                _ => {}
            }
        }
        config.ok_or_else(|| anyhow!("the Dockerfile has no FROM"))
    }
}

/// The Dockerfile's instructions with their first line number: comments and blank lines dropped,
/// continuation lines (`\` at the end) joined.
fn instructions(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (number, mut joined) = current.take().unwrap_or((i + 1, String::new()));
        let continued = trimmed.ends_with('\\');
        joined.push_str(trimmed.trim_end_matches('\\').trim_end());
        joined.push(' ');
        if continued {
            current = Some((number, joined));
        } else if !joined.trim().is_empty() {
            out.push((number, joined.trim().to_string()));
        }
    }
    out.extend(current.map(|(n, s)| (n, s.trim().to_string())));
    out
}

#[derive(Clone, Debug)]
enum Entry {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
}

/// A root file system to be, built in memory (owner root, mtime 0: the same inputs give the same layer).
#[derive(Clone, Debug, Default)]
pub struct Rootfs {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Rootfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory (and its parents, 0755).
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let path = relative(path);
        self.parents(&path);
        self.entries.insert(path, Entry::Dir { mode });
        self
    }

    /// A file with `data` (its parent directories 0755).
    pub fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        let path = relative(path);
        self.parents(&path);
        self.entries.insert(path, Entry::File { data: data.into(), mode });
        self
    }

    /// An executable of this machine at `path`, stripped of its symbols, with the shared libraries `ldd`
    /// lists for it at the paths `ldd` gives (a static executable has none).
    pub fn executable(&mut self, path: &str, host_file: &Path) -> Result<&mut Self> {
        let stripped = tempfile::NamedTempFile::new().context("a temporary file for strip")?;
        let out = stripped.path().display().to_string();
        run("strip", &["-o", &out, &host_file.display().to_string()])
            .context("stripping the executable (binutils' strip)")?;
        let data = std::fs::read(stripped.path()).with_context(|| format!("reading {out}"))?;
        self.file(path, data, 0o755);
        for library in shared_libraries(host_file)? {
            let data = std::fs::read(&library)
                .with_context(|| format!("reading the library {}", library.display()))?;
            self.file(&library.display().to_string(), data, 0o755);
        }
        Ok(self)
    }

    fn parents(&mut self, path: &Path) {
        for parent in path.ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                break;
            }
            self.entries.entry(parent.to_path_buf()).or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    /// The layer: an uncompressed tar of the entries in path order.
    fn tar(&self) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, path, std::io::empty())?;
                }
                Entry::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
            }
        }
        Ok(builder.into_inner()?)
    }
}

fn relative(path: &str) -> PathBuf {
    PathBuf::from(path.trim_start_matches('/'))
}

/// The libraries `ldd` resolves for `binary` (none for a static one). The dynamic loader is among them.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (libc-bin) to list the executable's libraries")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    Ok(text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let target = line.split("=>").nth(1).unwrap_or(line).trim();
            let path = target.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// An image: its name (`registry/repository:tag`), root file system and runtime configuration.
pub struct Image {
    pub name: String,
    pub rootfs: Rootfs,
    pub runtime: RuntimeConfig,
}

impl Image {
    /// Writes the OCI image-layout archive; returns the manifest's digest (`sha256:…`).
    pub fn write_archive(&self, out: &Path) -> Result<String> {
        // Uncompressed: the archive never leaves the machine, and gzip would cost seconds per image.
        let layer = self.rootfs.tar().context("writing the image's layer")?;
        let diff_id = format!("sha256:{}", sha256_hex(&layer));

        let r = &self.runtime;
        let mut config = ConfigBuilder::default()
            .env(r.env.clone())
            .entrypoint(r.entrypoint.clone())
            .cmd(r.cmd.clone())
            .exposed_ports(r.exposed_ports.clone())
            .working_dir(r.working_dir.clone().unwrap_or_else(|| "/".into()));
        if let Some(user) = &r.user {
            config = config.user(user.clone());
        }
        let config = ImageConfigurationBuilder::default()
            .created("1970-01-01T00:00:00Z")
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(config.build()?)
            .rootfs(RootFsBuilder::default().typ("layers").diff_ids(vec![diff_id]).build()?)
            .build()?;
        let config_json = canonical_json(&config)?;

        let layer_desc = descriptor(MediaType::ImageLayer, &layer)?;
        let config_desc = descriptor(MediaType::ImageConfig, &config_json)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(vec![layer_desc])
            .build()?;
        let manifest_json = canonical_json(&manifest)?;
        let tag = self.name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
        let manifest_desc = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(sha256_digest(&manifest_json)?)
            .size(manifest_json.len() as u64)
            .platform(PlatformBuilder::default().architecture(Arch::Amd64).os(Os::Linux).build()?)
            .annotations(HashMap::from([
                ("io.containerd.image.name".to_string(), self.name.clone()),
                ("org.opencontainers.image.ref.name".to_string(), tag.to_string()),
            ]))
            .build()?;
        let index =
            ImageIndexBuilder::default().schema_version(2u32).manifests(vec![manifest_desc]).build()?;
        let layout = OciLayoutBuilder::default().image_layout_version("1.0.0").build()?;

        let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |path: String, data: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_mtime(0);
            archive.append_data(&mut header, path, data).context("writing the image archive")
        };
        add("oci-layout".into(), &canonical_json(&layout)?)?;
        add("index.json".into(), &canonical_json(&index)?)?;
        for blob in [&layer, &config_json, &manifest_json] {
            add(format!("blobs/sha256/{}", sha256_hex(blob)), blob)?;
        }
        archive.into_inner()?.flush()?;
        Ok(format!("sha256:{}", sha256_hex(&manifest_json)))
    }
}

/// JSON with its object keys sorted (oci-spec writes some maps in hash order): the same image, the same bytes
/// and digests.
fn canonical_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::to_value(value)?)?)
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_digest(data: &[u8]) -> Result<Sha256Digest> {
    sha256_hex(data).parse::<Sha256Digest>().map_err(|e| anyhow!("a sha256 digest: {e}"))
}

fn descriptor(media_type: MediaType, data: &[u8]) -> Result<Descriptor> {
    Ok(Descriptor::new(media_type, data.len() as u64, sha256_digest(data)?))
}

/// A read-only check of an archive written by [`Image::write_archive`]: every blob's name is its digest.
pub fn verify_archive(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut names = Vec::new();
    for entry in tar::Archive::new(file).entries()? {
        let mut entry = entry?;
        let name = entry.path()?.display().to_string();
        if let Some(digest) = name.strip_prefix("blobs/sha256/") {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data)?;
            if sha256_hex(&data) != digest {
                bail!("{name} does not hash to its name");
            }
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
FROM rust:1-bookworm AS build
USER builder
RUN --mount=type=cache,target=/x \
    cargo build
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /wpa /wpa
USER 65532:65532
# a comment
EXPOSE 8443 8080
ENV A=1 B="two"
ENTRYPOINT ["/wpa"]
CMD ["serve"]
"#;

    #[test]
    fn the_final_stage_of_a_dockerfile_gives_the_runtime_contract() {
        let config = RuntimeConfig::from_dockerfile(DOCKERFILE).expect("parsed");
        assert_eq!(config.user.as_deref(), Some("65532:65532"));
        assert_eq!(config.entrypoint, ["/wpa"]);
        assert_eq!(config.cmd, ["serve"]);
        assert_eq!(config.exposed_ports, ["8443/tcp", "8080/tcp"]);
        assert_eq!(config.env, [PATH_ENV, "A=1", "B=two"]);
    }

    #[test]
    fn a_shell_form_entrypoint_is_refused_with_its_line() {
        let err = RuntimeConfig::from_dockerfile("FROM x\nENTRYPOINT /wpa serve\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2: ENTRYPOINT /wpa serve"), "{err:#}");
    }

    #[test]
    fn an_archive_names_its_blobs_by_digest_and_is_reproducible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rootfs = Rootfs::new();
        rootfs.file("/etc/passwd", "nonroot:x:65532:65532::/:/sbin/nologin\n", 0o644).dir("/tmp", 0o1777);
        let image = Image {
            name: "wpa.invalid/test:1".into(),
            rootfs,
            runtime: RuntimeConfig::from_dockerfile(DOCKERFILE).expect("parsed"),
        };
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        let digest = image.write_archive(&a).expect("written");
        assert_eq!(image.write_archive(&b).expect("written"), digest, "the same inputs give the same image");
        let names = verify_archive(&a).expect("valid");
        assert_eq!(names[..2], ["oci-layout", "index.json"]);
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names.contains(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))));
    }
}
