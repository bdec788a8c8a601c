//! `NodeBuilder`: the immutable builder of a [`NodeSpec`]. Every method checks its
//! argument at once and returns a new builder, so a mistake surfaces where it is made,
//! not at `register()`.

use super::spec::{check_url, payout_how_to, NodeCapabilities, NodePricing, NodeSpec, Payout, PayoutBinding};
use crate::error::{Error, Result};
use crate::job::INTERPRETERS;
use std::rc::Rc;

/// The immutable node builder: every method returns a new builder.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeBuilder {
    spec: Rc<NodeSpec>,
}

impl NodeBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }
    fn with(&self, f: impl FnOnce(&mut NodeSpec)) -> NodeBuilder {
        let mut s = (*self.spec).clone();
        f(&mut s);
        NodeBuilder { spec: Rc::new(s) }
    }

    /// What the node offers (replaces earlier capabilities). Checked now.
    pub fn capabilities(&self, caps: NodeCapabilities) -> Result<NodeBuilder> {
        if let Some(g) = &caps.gpu {
            if g.kind.trim().is_empty() {
                return Err(Error::invalid("capabilities(): gpu.type must name the GPU, e.g. 'rtx4090'"));
            }
            if let Some(n) = g.count {
                if !(n.fract() == 0.0 && (1.0..=1024.0).contains(&n)) {
                    return Err(Error::invalid(format!("capabilities(): gpu.count must be a whole number from 1 to 1024, got {n}")));
                }
            }
        }
        if let Some(n) = caps.cpu.as_ref().and_then(|c| c.cores) {
            if !(n.fract() == 0.0 && (1.0..=1_000_000.0).contains(&n)) {
                return Err(Error::invalid(format!("capabilities(): cpu.cores must be a whole number >= 1, got {n}")));
            }
        }
        let next = self.with(|s| s.capabilities = caps);
        next.spec.capabilities_json()?;
        Ok(next)
    }

    /// Where the node is, e.g. `'us-west-2'`.
    pub fn region(&self, region: &str) -> Result<NodeBuilder> {
        let ok = !region.is_empty() && region.len() <= 64 && region.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(Error::invalid(format!("region({region:?}) must be 1-64 letters, digits, '-', '_' or '.', like 'us-west-2'")));
        }
        let region = region.to_string();
        Ok(self.with(|s| s.region = Some(region)))
    }

    /// Prices per hour. Checked now.
    pub fn pricing(&self, pricing: NodePricing) -> Result<NodeBuilder> {
        if pricing.cpu.is_none() && pricing.gpu.is_none() {
            return Err(Error::invalid("pricing() needs cpu and/or gpu, like { cpu: '0.1/hour' }"));
        }
        let next = self.with(|s| s.pricing = Some(pricing));
        next.spec.capabilities_json()?;
        Ok(next)
    }

    /// The address payments for this node's work go to (`0x` + 40 hex digits), bound by
    /// the worker's own signature: payers pay an address only when that signature
    /// verifies under the worker's key, so a registry entry cannot redirect payments.
    /// The shape is checked now; the signature itself at `register()`, against the key
    /// the worker shows at `/health`.
    pub fn payout(&self, address: &str, binding: &PayoutBinding) -> Result<NodeBuilder> {
        if !crate::chain::binding::is_address(address) || !address.starts_with("0x") {
            return Err(Error::invalid(format!("payout({address:?}) must be an Ethereum address: 0x + 40 hex digits")));
        }
        if binding.chain_id == 0 {
            return Err(Error::invalid(format!("payout(): chainId must be the chain's id (1 for Ethereum mainnet, 31337 for anvil), not 0; {}", payout_how_to(address, 1))));
        }
        use base64::Engine;
        let sig_ok = base64::engine::general_purpose::STANDARD.decode(binding.signature.trim()).is_ok_and(|b| b.len() == 64);
        if !sig_ok {
            return Err(Error::invalid(format!("payout(): signature is not the base64 of a 64-byte Ed25519 signature; {}", payout_how_to(address, binding.chain_id))));
        }
        let payout = Payout { address: address.to_string(), chain_id: binding.chain_id, signature: binding.signature.trim().to_string() };
        Ok(self.with(|s| s.payout = Some(payout)))
    }

    /// The Sandrun worker this node serves from (default: the client's `apiEndpoint`).
    pub fn endpoint(&self, url: &str) -> Result<NodeBuilder> {
        let url = check_url("endpoint()", url)?;
        Ok(self.with(|s| s.endpoint = Some(url)))
    }

    /// The interpreters advertised (default `['python3', 'node', 'bash']`).
    pub fn interpreters(&self, names: Vec<String>) -> Result<NodeBuilder> {
        if names.is_empty() {
            return Err(Error::invalid(format!("interpreters() needs at least one of {}", INTERPRETERS.join(", "))));
        }
        for n in &names {
            if !INTERPRETERS.contains(&n.as_str()) {
                return Err(Error::invalid(format!("interpreters(): {n:?} is not one of {}", INTERPRETERS.join(", "))));
            }
        }
        Ok(self.with(|s| s.interpreters = Some(names)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caps() -> NodeCapabilities {
        serde_json::from_value(json!({
            "gpu": { "type": "rtx4090", "memory": "24GB", "count": 2 },
            "cpu": { "cores": 16, "memory": "64GB" },
            "storage": "1TB"
        }))
        .unwrap()
    }

    fn binding() -> PayoutBinding {
        use base64::Engine;
        PayoutBinding { chain_id: 31337, signature: base64::engine::general_purpose::STANDARD.encode([7u8; 64]) }
    }

    #[test]
    fn builds_the_registry_capabilities() {
        let b = NodeBuilder::new()
            .capabilities(caps())
            .unwrap()
            .region("us-west-2")
            .unwrap()
            .pricing(serde_json::from_value(json!({"gpu": "0.5/hour", "cpu": 0.1})).unwrap())
            .unwrap()
            .payout("0x00000000000000000000000000000000000000aB", &binding())
            .unwrap();
        let c = b.spec().capabilities_json().unwrap();
        assert_eq!(
            c,
            json!({
                "cpu_cores": 16, "memory_gb": 64, "gpu": {"type": "rtx4090", "memory": 24, "count": 2},
                "interpreters": ["python3", "node", "bash"], "storage": 1024, "region": "us-west-2",
                "pricing": {"cpu": "0.1/hour", "gpu": "0.5/hour"}, "payout": "0x00000000000000000000000000000000000000aB",
                "payout_chain_id": 31337, "payout_signature": binding().signature
            })
        );
        // Discovery reads these fields back.
        let d: crate::pool::DiscoveryCriteria = serde_json::from_value(json!({"minGPUs": 2, "gpuType": "RTX", "gpuMemory": "24GB", "region": "us-west-2", "maxPrice": "0.1/hour"})).unwrap();
        assert!(d.matches(&c));
    }

    #[test]
    fn builders_are_immutable_and_validate() {
        let a = NodeBuilder::new();
        let b = a.region("eu-west").unwrap();
        assert_eq!(a.spec().region, None);
        assert_eq!(b.spec().region.as_deref(), Some("eu-west"));
        let bad: Vec<Result<NodeBuilder>> = vec![
            a.region(""),
            a.region("us west"),
            a.payout("0x123", &binding()),
            a.payout("0xZZ00000000000000000000000000000000000000", &binding()),
            a.payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { chain_id: 0, ..binding() }),
            a.payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { signature: "c2ln".into(), ..binding() }),
            a.payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { signature: "not base64!".into(), ..binding() }),
            a.endpoint("ftp://x"),
            a.endpoint(""),
            a.interpreters(vec![]),
            a.interpreters(vec!["ruby".into()]),
            a.pricing(NodePricing::default()),
            a.pricing(serde_json::from_value(json!({"cpu": "cheap"})).unwrap()),
            a.pricing(serde_json::from_value(json!({"cpu": "0.1/fortnight"})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"gpu": {"type": "a100", "count": 0}})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"gpu": {"type": "", "count": 1}})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"cpu": {"memory": "lots"}})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"storage": -1})).unwrap()),
        ];
        for r in bad {
            assert_eq!(r.unwrap_err().code, crate::ErrorCode::InvalidArgument);
        }
        assert!(serde_json::from_value::<NodeCapabilities>(json!({"gpus": {}})).is_err());
        assert_eq!(a.endpoint("http://h:1/").unwrap().spec().endpoint.as_deref(), Some("http://h:1"));
    }
}
