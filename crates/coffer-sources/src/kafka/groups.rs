//! Consumer-group offsets on the wire: reading a group's committed offsets (a backup, and a
//! verified restore checking what it committed) and committing translated ones (a restore).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::conn::{error_name, topic_name, Cluster, Result};

/// Offsets per topic and partition.
pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// The offsets `group` has committed, on every topic.
pub fn committed(cluster: &mut Cluster, group: &str) -> Result<Offsets> {
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(None)]);
    let resp: OffsetFetchResponse = cluster
        .coordinator(group)?
        .call(ApiKey::OffsetFetch, &req)?;
    let mut out = Offsets::new();
    for rg in &resp.groups {
        if rg.error_code != 0 {
            return Err(format!(
                "group {group}: offsets: {}",
                error_name(rg.error_code)
            ));
        }
        for t in &rg.topics {
            for p in &t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.entry(t.name.0.to_string())
                        .or_default()
                        .insert(p.partition_index, p.committed_offset);
                }
            }
        }
    }
    Ok(out)
}

/// Commits `offsets` for `group` (which must have no live members).
pub fn commit(cluster: &mut Cluster, group: &str, offsets: &Offsets) -> Result<()> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::new())
        .with_topics(
            offsets
                .iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(
                            ps.iter()
                                .map(|(p, o)| {
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(*o)
                                        .with_committed_leader_epoch(-1)
                                        .with_committed_metadata(Some(StrBytes::new()))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let resp: OffsetCommitResponse = cluster
        .coordinator(group)?
        .call(ApiKey::OffsetCommit, &req)?;
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(format!(
                    "group {group}: committing {}/{}: {} (a group with live members cannot be given offsets: stop its consumers first)",
                    t.name.0.as_str(),
                    p.partition_index,
                    error_name(p.error_code)
                ));
            }
        }
    }
    Ok(())
}
