//! Blocking connections to Kafka brokers. Requests and responses are encoded by the
//! `kafka-protocol` crate (every API and version, generated from Kafka's own schemas); this
//! module frames them, matches correlation ids, and routes each request to the broker that
//! must answer it (a partition's leader, a group's coordinator).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use parking_lot::Mutex;

/// The one version of each API coffer speaks: all are in Kafka 3.0 and later (OffsetFetch v8
/// is the newest; Metadata v10 is the first with topic ids), and in tansu.
pub const VERSIONS: [(ApiKey, i16); 11] = [
    (ApiKey::Metadata, 10),
    (ApiKey::FindCoordinator, 4),
    (ApiKey::Fetch, 11),
    (ApiKey::ListOffsets, 5),
    (ApiKey::ListGroups, 3),
    (ApiKey::OffsetFetch, 8),
    (ApiKey::DescribeConfigs, 1),
    (ApiKey::CreateTopics, 5),
    (ApiKey::InitProducerId, 4),
    (ApiKey::Produce, 8),
    (ApiKey::OffsetCommit, 8),
];

/// The version coffer speaks of `key`.
pub fn version(key: ApiKey) -> i16 {
    VERSIONS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, v)| *v)
}

/// What a failed call says: which broker, which request, what happened.
pub type Result<T> = std::result::Result<T, String>;

/// Largest response accepted (a fetch asks for at most 64 MiB).
const MAX_RESPONSE: usize = 256 << 20;

/// One broker connection.
pub struct Conn {
    stream: TcpStream,
    addr: String,
    correlation: i32,
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn> {
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| format!("broker {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("broker {addr}: the name has no address"))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)
            .map_err(|e| format!("broker {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| format!("broker {addr}: {e}"))?;
        Ok(Conn {
            stream,
            addr: addr.to_string(),
            correlation: 0,
        })
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` as API `key` (in the version of [`VERSIONS`]) and reads its response.
    pub fn call<Q, R>(&mut self, key: ApiKey, req: &Q) -> Result<R>
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.call_version(key, version(key), req)
    }

    /// Checks that the broker speaks every version coffer uses; the error lists the ones it
    /// does not.
    fn check_versions(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("coffer"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = self.call_version(ApiKey::ApiVersions, 3, &req)?;
        if resp.error_code != 0 {
            return Err(format!(
                "broker {}: ApiVersions: {} (coffer needs Kafka 3.0 or later)",
                self.addr,
                error_name(resp.error_code)
            ));
        }
        let missing: Vec<String> = VERSIONS
            .iter()
            .filter(|(k, v)| {
                !resp
                    .api_keys
                    .iter()
                    .any(|a| a.api_key == *k as i16 && a.min_version <= *v && *v <= a.max_version)
            })
            .map(|(k, v)| format!("{k:?} v{v}"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "broker {} does not speak {}, which coffer uses: it needs a broker compatible with Kafka 3.0 or later",
                self.addr,
                missing.join(", ")
            ));
        }
        Ok(())
    }

    fn call_version<Q, R>(&mut self, key: ApiKey, version: i16, req: &Q) -> Result<R>
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        let what =
            |e: &dyn std::fmt::Display| format!("broker {}: {key:?} request: {e}", self.addr);
        let read_err = |e: std::io::Error| {
            match e.kind() {
            std::io::ErrorKind::UnexpectedEof => what(
                &"the connection closed before the whole answer came (the broker stopped or restarted)",
            ),
            _ => what(&e),
        }
        };
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("coffer")));
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, Q::header_version(version))
            .map_err(|e| what(&e))?;
        req.encode(&mut buf, version).map_err(|e| what(&e))?;
        let n = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&n.to_be_bytes());
        self.stream.write_all(&buf).map_err(|e| what(&e))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(read_err)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RESPONSE {
            return Err(what(&format!(
                "a response of {len} bytes is beyond any request of ours"
            )));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).map_err(read_err)?;
        let mut body = Bytes::from(body);
        let rh =
            ResponseHeader::decode(&mut body, R::header_version(version)).map_err(|e| what(&e))?;
        if rh.correlation_id != self.correlation {
            return Err(what(&format!(
                "response to request {} instead of {}",
                rh.correlation_id, self.correlation
            )));
        }
        R::decode(&mut body, version).map_err(|e| what(&e))
    }
}

/// A Kafka error code as a message.
pub fn error_name(code: i16) -> String {
    let name = match code {
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        10 => "MESSAGE_TOO_LARGE",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        25 => "UNKNOWN_MEMBER_ID",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        38 => "INVALID_REPLICATION_FACTOR",
        40 => "INVALID_CONFIG",
        45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        46 => "DUPLICATE_SEQUENCE_NUMBER",
        -1 => "UNKNOWN_SERVER_ERROR",
        _ => "",
    };
    if name.is_empty() {
        format!("Kafka error {code}")
    } else {
        format!("{name} (Kafka error {code})")
    }
}

/// The brokers of one cluster, found from the bootstrap list.
pub struct Cluster {
    bootstrap: Vec<String>,
    timeout: Duration,
    brokers: HashMap<i32, String>,
    conns: HashMap<String, Conn>,
    /// The cluster id the brokers report.
    pub cluster_id: Option<String>,
}

impl Cluster {
    /// Connects to the first bootstrap broker that answers and learns the others.
    pub fn connect(bootstrap: &[String], timeout: Duration) -> Result<Cluster> {
        let mut c = Cluster {
            bootstrap: bootstrap.to_vec(),
            timeout,
            brokers: HashMap::new(),
            conns: HashMap::new(),
            cluster_id: None,
        };
        c.any()?.check_versions()?;
        c.metadata(Some(&[]))?;
        Ok(c)
    }

    /// The same cluster with no connections open yet: another thread's own, which connects
    /// to each broker when it first needs it.
    pub fn fork(&self) -> Cluster {
        Cluster {
            bootstrap: self.bootstrap.clone(),
            timeout: self.timeout,
            brokers: self.brokers.clone(),
            conns: HashMap::new(),
            cluster_id: self.cluster_id.clone(),
        }
    }

    /// Runs `work` on each job with `workers` threads, each with connections of its own
    /// ([`Cluster::fork`]); the first failure stops the others (after the job each has in
    /// hand). The results come in no particular order.
    pub fn each<J: Send, D: Send, E: Send>(
        &self,
        jobs: Vec<J>,
        workers: usize,
        work: impl Fn(&mut Cluster, J) -> std::result::Result<D, E> + Sync,
    ) -> std::result::Result<Vec<D>, E> {
        let n = workers.clamp(1, jobs.len().max(1));
        let queue = Mutex::new(jobs.into_iter());
        let done = Mutex::new(Vec::new());
        let failed: Mutex<Option<E>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..n {
                let mut conns = self.fork();
                let (queue, done, failed, work) = (&queue, &done, &failed, &work);
                scope.spawn(move || loop {
                    if failed.lock().is_some() {
                        return;
                    }
                    let Some(job) = queue.lock().next() else {
                        return;
                    };
                    match work(&mut conns, job) {
                        Ok(d) => done.lock().push(d),
                        Err(e) => {
                            failed.lock().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        match failed.into_inner() {
            Some(e) => Err(e),
            None => Ok(done.into_inner()),
        }
    }

    /// Metadata of `topics` (None: every topic). Also refreshes the broker list.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|t| {
                t.iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let md: MetadataResponse = self.any()?.call(ApiKey::Metadata, &req)?;
        for b in &md.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        self.cluster_id = md.cluster_id.as_ref().map(|s| s.to_string());
        Ok(md)
    }

    /// A connection to any broker: a known one, else the bootstrap list in order.
    pub fn any(&mut self) -> Result<&mut Conn> {
        if let Some(addr) = self.conns.keys().next().cloned() {
            return self.conn_to(&addr);
        }
        let mut errors = Vec::new();
        for addr in self.bootstrap.clone() {
            match Conn::connect(&addr, self.timeout) {
                Ok(c) => {
                    self.conns.insert(addr.clone(), c);
                    return self.conn_to(&addr);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("no broker answered: {}", errors.join("; ")))
    }

    /// A connection to broker `node`.
    pub fn node(&mut self, node: i32) -> Result<&mut Conn> {
        let addr = self
            .brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| format!("broker {node} is not in the cluster's metadata"))?;
        self.conn_to(&addr)
    }

    fn conn_to(&mut self, addr: &str) -> Result<&mut Conn> {
        if !self.conns.contains_key(addr) {
            let c = Conn::connect(addr, self.timeout)?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| format!("broker {addr}: connection lost"))
    }

    /// Drops the connection to `addr` (after an I/O error: the next call reconnects).
    pub fn forget(&mut self, addr: &str) {
        self.conns.remove(addr);
    }

    /// The coordinator of consumer group `group`.
    pub fn coordinator(&mut self, group: &str) -> Result<&mut Conn> {
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let resp: FindCoordinatorResponse = self.any()?.call(ApiKey::FindCoordinator, &req)?;
        let c = resp
            .coordinators
            .first()
            .ok_or_else(|| format!("group {group:?}: no coordinator in the answer"))?;
        if c.error_code != 0 {
            return Err(format!(
                "group {group:?}: finding its coordinator: {}",
                error_name(c.error_code)
            ));
        }
        let addr = format!("{}:{}", c.host.as_str(), c.port);
        self.brokers.insert(c.node_id.0, addr.clone());
        self.conn_to(&addr)
    }
}

/// A topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
