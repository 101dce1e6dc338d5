//! Trees: one JSON blob per directory listing its nodes, sorted by raw name bytes, each node
//! with its metadata and either the data blob ids of its content (files) or the id of its
//! subtree (directories). Field names and the Go `os.FileMode` encoding of `mode` follow
//! restic's `Node` so that restic restores what coffer stores and the other way round.

use base64::Engine;
use chrono::{DateTime, FixedOffset, Local, TimeZone};
use serde::{Deserialize, Serialize};

use crate::goquote;
use crate::id::Id;

/// Go `os.FileMode` bits restic stores in `mode`.
pub mod gomode {
    /// Directory.
    pub const DIR: u32 = 1 << 31;
    /// Symbolic link.
    pub const SYMLINK: u32 = 1 << 27;
    /// Device (block unless CHAR_DEVICE is set too).
    pub const DEVICE: u32 = 1 << 26;
    /// FIFO.
    pub const NAMED_PIPE: u32 = 1 << 25;
    /// Unix socket.
    pub const SOCKET: u32 = 1 << 24;
    /// setuid.
    pub const SETUID: u32 = 1 << 23;
    /// setgid.
    pub const SETGID: u32 = 1 << 22;
    /// Character device.
    pub const CHAR_DEVICE: u32 = 1 << 21;
    /// Sticky.
    pub const STICKY: u32 = 1 << 20;

    /// Go's mode for a Unix `st_mode`.
    pub fn from_unix(st_mode: u32) -> u32 {
        let mut m = st_mode & 0o777;
        match st_mode & libc::S_IFMT {
            libc::S_IFDIR => m |= DIR,
            libc::S_IFLNK => m |= SYMLINK,
            libc::S_IFBLK => m |= DEVICE,
            libc::S_IFCHR => m |= DEVICE | CHAR_DEVICE,
            libc::S_IFIFO => m |= NAMED_PIPE,
            libc::S_IFSOCK => m |= SOCKET,
            _ => {}
        }
        if st_mode & libc::S_ISUID != 0 {
            m |= SETUID;
        }
        if st_mode & libc::S_ISGID != 0 {
            m |= SETGID;
        }
        if st_mode & libc::S_ISVTX != 0 {
            m |= STICKY;
        }
        m
    }

    /// Permission and special bits for `chmod` from a Go mode.
    pub fn to_unix_perm(mode: u32) -> u32 {
        let mut m = mode & 0o777;
        if mode & SETUID != 0 {
            m |= libc::S_ISUID;
        }
        if mode & SETGID != 0 {
            m |= libc::S_ISGID;
        }
        if mode & STICKY != 0 {
            m |= libc::S_ISVTX;
        }
        m
    }
}

/// What a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Block device.
    Dev,
    /// Character device.
    CharDev,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// A type written by a newer client.
    Other(String),
}

impl NodeType {
    /// restic's name for the type.
    pub fn as_str(&self) -> &str {
        match self {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::Dev => "dev",
            NodeType::CharDev => "chardev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
            NodeType::Other(s) => s,
        }
    }

    fn parse(s: &str) -> NodeType {
        match s {
            "file" => NodeType::File,
            "dir" => NodeType::Dir,
            "symlink" => NodeType::Symlink,
            "dev" => NodeType::Dev,
            "chardev" => NodeType::CharDev,
            "fifo" => NodeType::Fifo,
            "socket" => NodeType::Socket,
            o => NodeType::Other(o.to_string()),
        }
    }
}

/// One extended attribute.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExtendedAttribute {
    /// Attribute name.
    pub name: String,
    /// Raw value (base64 in JSON).
    #[serde(with = "b64")]
    pub value: Vec<u8>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// The Go zero time, which restic writes for unset times.
pub fn zero_time() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").expect("constant")
}

/// A Unix timestamp in the local zone, as restic records times.
pub fn local_time(sec: i64, nsec: u32) -> DateTime<FixedOffset> {
    Local
        .timestamp_opt(sec, nsec)
        .single()
        .map(|t| t.fixed_offset())
        .unwrap_or_else(zero_time)
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Raw name bytes (need not be UTF-8).
    pub name: Vec<u8>,
    /// Kind of entry.
    pub kind: NodeType,
    /// Go `os.FileMode`.
    pub mode: u32,
    /// Modification time.
    pub mtime: DateTime<FixedOffset>,
    /// Access time.
    pub atime: DateTime<FixedOffset>,
    /// Status change time.
    pub ctime: DateTime<FixedOffset>,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner name.
    pub user: String,
    /// Group name.
    pub group: String,
    /// Inode number.
    pub inode: u64,
    /// st_dev, recorded for hard-linked files.
    pub device_id: u64,
    /// Size in bytes (files).
    pub size: u64,
    /// Number of hard links.
    pub links: u64,
    /// Raw symlink target.
    pub link_target: Vec<u8>,
    /// Extended attributes.
    pub xattrs: Vec<ExtendedAttribute>,
    /// st_rdev for devices.
    pub device: u64,
    /// Data blobs of a file, in order.
    pub content: Option<Vec<Id>>,
    /// Tree of a directory.
    pub subtree: Option<Id>,
    /// Fields written by other clients that coffer keeps but does not interpret.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Node {
    /// A node of `kind` with zero metadata.
    pub fn new(name: Vec<u8>, kind: NodeType) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            mtime: zero_time(),
            atime: zero_time(),
            ctime: zero_time(),
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            inode: 0,
            device_id: 0,
            size: 0,
            links: 0,
            link_target: Vec::new(),
            xattrs: Vec::new(),
            device: 0,
            content: None,
            subtree: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Name for display (lossy UTF-8).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero32(v: &u32) -> bool {
    *v == 0
}

#[derive(Serialize, Deserialize)]
struct NodeJson {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "is_zero32")]
    mode: u32,
    #[serde(default = "zero_time")]
    mtime: DateTime<FixedOffset>,
    #[serde(default = "zero_time")]
    atime: DateTime<FixedOffset>,
    #[serde(default = "zero_time")]
    ctime: DateTime<FixedOffset>,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    inode: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    device_id: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    links: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    linktarget: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linktarget_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extended_attributes: Vec<ExtendedAttribute>,
    #[serde(default, skip_serializing_if = "is_zero")]
    device: u64,
    content: Option<Vec<Id>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subtree: Option<Id>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (linktarget, linktarget_raw) = match std::str::from_utf8(&self.link_target) {
            Ok(t) => (t.to_string(), None),
            Err(_) => (
                String::from_utf8_lossy(&self.link_target).into_owned(),
                Some(base64::engine::general_purpose::STANDARD.encode(&self.link_target)),
            ),
        };
        // restic's checker rejects file nodes whose content is null.
        let content = match (&self.kind, &self.content) {
            (NodeType::File, None) => Some(Vec::new()),
            (_, c) => c.clone(),
        };
        NodeJson {
            name: goquote::quote(&self.name),
            kind: self.kind.as_str().to_string(),
            mode: self.mode,
            mtime: self.mtime,
            atime: self.atime,
            ctime: self.ctime,
            uid: self.uid,
            gid: self.gid,
            user: self.user.clone(),
            group: self.group.clone(),
            inode: self.inode,
            device_id: self.device_id,
            size: self.size,
            links: self.links,
            linktarget,
            linktarget_raw,
            extended_attributes: self.xattrs.clone(),
            device: self.device,
            content,
            subtree: self.subtree,
            extra: self.extra.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let j = NodeJson::deserialize(d)?;
        let name = goquote::unquote(&j.name).map_err(serde::de::Error::custom)?;
        let link_target = match j.linktarget_raw {
            Some(raw) => base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(serde::de::Error::custom)?,
            None => j.linktarget.into_bytes(),
        };
        Ok(Node {
            name,
            kind: NodeType::parse(&j.kind),
            mode: j.mode,
            mtime: j.mtime,
            atime: j.atime,
            ctime: j.ctime,
            uid: j.uid,
            gid: j.gid,
            user: j.user,
            group: j.group,
            inode: j.inode,
            device_id: j.device_id,
            size: j.size,
            links: j.links,
            link_target,
            xattrs: j.extended_attributes,
            device: j.device,
            content: j.content,
            subtree: j.subtree,
            extra: j.extra,
        })
    }
}

/// A directory listing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Tree {
    /// Entries sorted by raw name.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Serialized bytes as stored in a tree blob (JSON plus a newline, as restic writes).
    pub fn to_blob(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("tree serialization cannot fail");
        v.push(b'\n');
        v
    }

    /// Parses a tree blob.
    pub fn from_blob(b: &[u8]) -> Result<Tree, serde_json::Error> {
        serde_json::from_slice(b)
    }

    /// Sorts nodes by raw name bytes (restic's order).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The node called `name`.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
            .or_else(|| self.nodes.iter().find(|n| n.name == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_restic_tree() {
        let j = r#"{"nodes":[{"name":"a\\xffb","type":"file","mode":420,"mtime":"2024-01-02T03:04:05.123456789+01:00","atime":"2024-01-02T03:04:05.123456789+01:00","ctime":"2024-01-02T03:04:05.123456789+01:00","uid":1000,"gid":100,"user":"u","inode":42,"size":3,"links":1,"content":["2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]},{"name":"d","type":"dir","mode":2147484141,"mtime":"0001-01-01T00:00:00Z","atime":"0001-01-01T00:00:00Z","ctime":"0001-01-01T00:00:00Z","uid":0,"gid":0,"content":null,"subtree":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","generic_attributes":{"x":1}}]}"#;
        let t = Tree::from_blob(j.as_bytes()).unwrap();
        assert_eq!(t.nodes[0].name, b"a\xffb");
        assert_eq!(t.nodes[0].kind, NodeType::File);
        assert_eq!(t.nodes[0].mtime.timestamp_subsec_nanos(), 123456789);
        assert_eq!(t.nodes[1].mode & gomode::DIR, gomode::DIR);
        assert!(t.nodes[1].extra.contains_key("generic_attributes"));
        let again = Tree::from_blob(&t.to_blob()).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn file_content_never_null() {
        let t = Tree {
            nodes: vec![Node::new(b"empty".to_vec(), NodeType::File)],
        };
        let s = String::from_utf8(t.to_blob()).unwrap();
        assert!(s.contains("\"content\":[]"), "{s}");
    }

    #[test]
    fn raw_link_target() {
        let mut n = Node::new(b"l".to_vec(), NodeType::Symlink);
        n.link_target = b"/x\xff".to_vec();
        let t = Tree { nodes: vec![n] };
        let back = Tree::from_blob(&t.to_blob()).unwrap();
        assert_eq!(back.nodes[0].link_target, b"/x\xff");
    }
}
