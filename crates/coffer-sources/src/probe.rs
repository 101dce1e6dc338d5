//! What `dr assess` asks each source before anything else: is the server there and answering,
//! which version, and which role (primary or replica) it says it has. A source without a
//! server (files) checks that its paths can be read.

use serde::Serialize;

/// The answer to a probe.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Probe {
    /// Whether the probe could say anything (false: this type has nothing to ask).
    pub checked: bool,
    /// The server's version, as it reports it.
    pub version: Option<String>,
    /// `primary` or `replica`, where the server says.
    pub role: Option<String>,
    /// Anything else worth one line (paths found, ...).
    pub detail: Option<String>,
}

impl Probe {
    /// A probe that answered.
    pub fn answered(version: Option<String>, role: Option<&str>) -> Probe {
        Probe {
            checked: true,
            version,
            role: role.map(str::to_string),
            detail: None,
        }
    }
}
