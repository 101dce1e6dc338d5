//! Topic configs on the wire: which settings a backup keeps (the topic's own, not the
//! broker's defaults), and what a verified restore finds on the topics it restored.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Map, Value};

use super::conn::{error_name, Cluster, Result};

const TOPIC: i8 = 2;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

/// Every config the brokers report for each of `topics`.
fn describe(cluster: &mut Cluster, topics: &[&str]) -> Result<Vec<DescribeConfigsResult>> {
    let req = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC)
                    .with_resource_name(StrBytes::from_string(t.to_string()))
                    .with_configuration_keys(None)
            })
            .collect(),
    );
    let resp: DescribeConfigsResponse = cluster.any()?.call(ApiKey::DescribeConfigs, &req)?;
    for r in &resp.results {
        if r.error_code != 0 {
            return Err(format!(
                "topic {}: reading its configs: {}",
                r.resource_name.as_str(),
                error_name(r.error_code)
            ));
        }
    }
    Ok(resp.results)
}

/// Each topic's own settings (name -> value), the ones a backup keeps and a restore sets.
pub fn own(cluster: &mut Cluster, topics: &[&str]) -> Result<BTreeMap<String, Map<String, Value>>> {
    let mut out = BTreeMap::new();
    for r in describe(cluster, topics)? {
        // Kafka lists every setting and marks the topic's own; a broker that lists only
        // the ones set at creation (all marked default) gets them all kept.
        let full = r
            .configs
            .iter()
            .any(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
            || r.configs.len() > 20;
        let mut m = Map::new();
        for c in &r.configs {
            let own = if full {
                c.config_source == DYNAMIC_TOPIC_CONFIG
            } else {
                !c.read_only
            };
            if own && !c.is_sensitive {
                if let Some(v) = &c.value {
                    m.insert(c.name.to_string(), Value::String(v.to_string()));
                }
            }
        }
        out.insert(r.resource_name.to_string(), m);
    }
    Ok(out)
}

/// The settings of `topic` that differ from `want` (name -> backed-up value), one sentence
/// each.
pub fn differences(
    cluster: &mut Cluster,
    topic: &str,
    want: &Map<String, Value>,
) -> Result<Vec<String>> {
    if want.is_empty() {
        return Ok(Vec::new());
    }
    let have: BTreeMap<String, Option<String>> = describe(cluster, &[topic])?
        .into_iter()
        .flat_map(|r| r.configs)
        .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
        .collect();
    Ok(want
        .iter()
        .filter_map(|(k, v)| {
            let v = v.as_str()?;
            let h = have.get(k).cloned().flatten();
            (h.as_deref() != Some(v)).then(|| {
                format!(
                    "topic {topic}: {k} is {}, the backup has {v}",
                    h.unwrap_or_else(|| "not set".into())
                )
            })
        })
        .collect())
}
