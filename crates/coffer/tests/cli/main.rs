//! End-to-end tests of the `coffer` binary, as one test target (ripgrep style): every test
//! runs the real binary against real repositories (local directories, a tmpfs, SeaweedFS S3)
//! and uses Debian's restic as the oracle for what a valid repository is.

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

mod alerting;
mod alerts;
mod check;
mod copy;
mod crash;
mod daemon_api;
mod damage;
mod dr;
mod dr_drill;
mod errors;
mod forget;
mod inspect;
mod jobs;
mod kafka;
mod keys;
mod pitr;
mod prune;
mod restic_compat;
mod roundtrip;
mod s3;
mod schedule;
mod shell;
mod sources;
mod util;
