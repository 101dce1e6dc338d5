//! Disaster recovery: whether the site could be recovered now, and (in later modules) doing it.
//!
//! - [`assess`]: every source asked whether its server answers and how old its newest backup is
//!   against its RPO; every repository whether it opens, how full it is and whether stale locks
//!   block it; an overall status with a recommendation (a sentence and a command) per finding.
//!
//! The targets and scenarios themselves are config (`coffer_config::dr`); this crate returns
//! plans and reports that the CLI, the daemon and the dashboard only print.

pub mod assess;

pub use assess::{assess, Assessment, Check, Level};
