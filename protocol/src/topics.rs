//! The MQTT topics of one device: it publishes only under `{pk}/{dn}/up/` and subscribes
//! only under `{pk}/{dn}/down/`.

use crate::downlink::DownlinkKind;
use crate::uplink::UplinkKind;
use tare_domain::CabinetId;

/// The topic tree of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopics {
    up: String,
    down: String,
}

impl DeviceTopics {
    /// The topics of `device`.
    pub fn of(device: &CabinetId) -> Self {
        Self {
            up: format!("{}/{}/up/", device.pk(), device.dn()),
            down: format!("{}/{}/down/", device.pk(), device.dn()),
        }
    }

    /// `{pk}/{dn}/up/`: everything the device may publish starts with it.
    pub fn uplink_prefix(&self) -> &str {
        &self.up
    }

    /// `{pk}/{dn}/up/{kind}`.
    pub fn uplink(&self, kind: UplinkKind) -> String {
        format!("{}{kind}", self.up)
    }

    /// `{pk}/{dn}/down/{kind}`.
    pub fn downlink(&self, kind: DownlinkKind) -> String {
        format!("{}{kind}", self.down)
    }

    /// `{pk}/{dn}/down/#`: what a device subscribes to.
    pub fn all_downlinks(&self) -> String {
        format!("{}#", self.down)
    }

    /// `{pk}/{dn}/up/status`: the only topic a last will may name.
    pub fn will(&self) -> String {
        self.uplink(UplinkKind::Status)
    }

    /// The uplink kind segment of `topic`, if it is one of this device's own uplink
    /// topics (`{pk}/{dn}/up/{kind}`, one segment, not empty); the kind is checked when
    /// the message is parsed.
    pub fn uplink_kind<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix(&self.up).filter(|k| !k.is_empty() && !k.contains('/'))
    }

    /// Whether a subscription filter stays within this device's downlinks.
    pub fn is_own_downlink_filter(&self, filter: &str) -> bool {
        filter.starts_with(&self.down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_owns_its_own_topics_only() {
        let t = DeviceTopics::of(&CabinetId::parse("wc1.SN1").unwrap());
        assert_eq!(t.uplink(UplinkKind::AdPlay), "wc1/SN1/up/ad_play");
        assert_eq!(t.downlink(DownlinkKind::Cmd), "wc1/SN1/down/cmd");
        assert_eq!(t.all_downlinks(), "wc1/SN1/down/#");
        assert_eq!(t.will(), "wc1/SN1/up/status");
        assert_eq!(t.uplink_kind("wc1/SN1/up/weight"), Some("weight"));
        assert_eq!(t.uplink_kind("wc1/SN2/up/weight"), None);
        assert_eq!(t.uplink_kind("wc1/SN1/up/a/b"), None);
        assert_eq!(t.uplink_kind("wc1/SN1/up/"), None);
        assert!(t.is_own_downlink_filter("wc1/SN1/down/#"));
        assert!(!t.is_own_downlink_filter("wc1/#"));
    }
}
