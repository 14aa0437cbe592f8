//! The emergency switch [B8]: an operator stops new credit-pay orders — for every
//! provider, or for some — when a provider misbehaves or money is at risk; orders already
//! open settle as usual. Each change is an event with who and why, so the log shows when
//! shoppers were turned away and on whose word.

use crate::{DomainError, ProviderKind, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The one switch's aggregate id.
pub const EMERGENCY_STOP_ID: &str = "payments";

/// Commands the switch accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmergencyCommand {
    /// Sets what is stopped (everything, some providers, or nothing).
    Set {
        /// Stop every provider.
        all: bool,
        /// Stop these providers.
        providers: BTreeSet<ProviderKind>,
        /// Who.
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

/// Facts about the switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmergencyEvent {
    /// What is stopped changed.
    EmergencyStopChanged {
        /// Every provider stopped.
        all: bool,
        /// These providers stopped.
        providers: BTreeSet<ProviderKind>,
        /// Who.
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for EmergencyEvent {
    fn event_type(&self) -> String {
        "EmergencyStopChanged".into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// The switch refuses nothing (an unchanged setting records nothing); the type exists
/// for the aggregate's contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {}

impl DomainError for EmergencyError {
    fn kind(&self) -> RejectionKind {
        match *self {}
    }
    fn code(&self) -> &'static str {
        match *self {}
    }
}

/// The switch's position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmergencyStop {
    /// Every provider stopped.
    pub all: bool,
    /// These providers stopped.
    pub providers: BTreeSet<ProviderKind>,
    /// Who set it last.
    pub by: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Since when.
    pub since: Option<UnixMs>,
}

impl EmergencyStop {
    /// Whether new orders paid through `provider` are stopped.
    pub fn stops(&self, provider: ProviderKind) -> bool {
        self.all || self.providers.contains(&provider)
    }

    /// What setting the switch makes happen: nothing if it is already so.
    pub fn decide(&self, command: EmergencyCommand) -> Vec<EmergencyEvent> {
        let EmergencyCommand::Set {
            all,
            providers,
            by,
            reason,
            at,
        } = command;
        if all == self.all && providers == self.providers {
            return vec![];
        }
        vec![EmergencyEvent::EmergencyStopChanged {
            all,
            providers,
            by,
            reason,
            at,
        }]
    }
}

impl Aggregate for EmergencyStop {
    const TYPE: &'static str = "emergency_stop";
    type Command = EmergencyCommand;
    type Event = EmergencyEvent;
    type Error = EmergencyError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command) {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let EmergencyEvent::EmergencyStopChanged {
            all,
            providers,
            by,
            reason,
            at,
        } = event;
        self.all = all;
        self.providers = providers;
        self.by = Some(by);
        self.reason = Some(reason);
        self.since = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(all: bool, providers: &[ProviderKind]) -> EmergencyCommand {
        EmergencyCommand::Set {
            all,
            providers: providers.iter().copied().collect(),
            by: "ann".into(),
            reason: "provider incident".into(),
            at: 5,
        }
    }

    #[test]
    fn the_switch_stops_what_it_names_and_records_each_change_once() {
        let mut s = EmergencyStop::default();
        assert!(!s.stops(ProviderKind::Alipay));
        let events = s.decide(set(false, &[ProviderKind::Alipay]));
        assert_eq!(events.len(), 1);
        for e in events {
            s.apply(e);
        }
        assert!(s.stops(ProviderKind::Alipay) && !s.stops(ProviderKind::Wechat));
        assert_eq!((s.by.as_deref(), s.since), (Some("ann"), Some(5)));
        assert!(
            s.decide(set(false, &[ProviderKind::Alipay])).is_empty(),
            "unchanged: nothing recorded"
        );
        for e in s.decide(set(true, &[])) {
            s.apply(e);
        }
        assert!(s.stops(ProviderKind::Wechat) && s.stops(ProviderKind::Alipay));
        for e in s.decide(set(false, &[])) {
            s.apply(e);
        }
        assert!(!s.stops(ProviderKind::Wechat) && !s.stops(ProviderKind::Alipay));
    }
}
