use super::*;
use cqrs_es::test::TestFramework;

const AT: UnixMs = 1_760_000_000_000;

fn cab(s: &str) -> CabinetId {
    CabinetId::parse(&format!("wc.{s}")).unwrap()
}

fn upgrade() -> CampaignAction {
    CampaignAction::Upgrade {
        component: "fw".into(),
        version: "2.1.0".into(),
        uri: "https://fw.example/2.1.0.bin".into(),
        sha256: "ab".repeat(32),
    }
}

fn create(action: CampaignAction, cabinets: &[&str]) -> CampaignCommand {
    CampaignCommand::Create {
        name: "spring firmware".into(),
        action,
        cabinets: cabinets.iter().map(|c| cab(c)).collect(),
        ttl_ms: 86_400_000,
        by: "op-ann".into(),
        at: AT,
    }
}

fn created(action: CampaignAction, cabinets: &[&str]) -> CampaignEvent {
    CampaignEvent::CampaignCreated {
        name: "spring firmware".into(),
        action,
        cabinets: cabinets.iter().map(|c| cab(c)).collect(),
        ttl_ms: 86_400_000,
        by: "op-ann".into(),
        at: AT,
    }
}

fn settle(cmd: &str, outcome: CampaignCommandOutcome) -> CampaignCommand {
    CampaignCommand::RecordOutcome {
        cabinet: cab("c1"),
        cmd_id: cmd.into(),
        outcome,
        detail: None,
        at: AT + 5,
    }
}

fn settled(cmd: &str, outcome: CampaignCommandOutcome) -> CampaignEvent {
    CampaignEvent::CampaignCommandSettled {
        cabinet: cab("c1"),
        cmd_id: cmd.into(),
        outcome,
        detail: None,
        at: AT + 5,
    }
}

#[test]
fn a_campaign_is_created_once_and_its_id_cannot_be_reused_for_another() {
    TestFramework::<Campaign>::with(())
        .given_no_previous_events()
        .when(create(upgrade(), &["c1", "c2"]))
        .then_expect_events(vec![created(upgrade(), &["c1", "c2"])]);
    TestFramework::<Campaign>::with(())
        .given(vec![created(upgrade(), &["c1", "c2"])])
        .when(create(upgrade(), &["c1", "c2"]))
        .then_expect_events(vec![]);
    TestFramework::<Campaign>::with(())
        .given(vec![created(upgrade(), &["c1", "c2"])])
        .when(create(upgrade(), &["c1"]))
        .then_expect_error(CampaignError::AlreadyExists);
}

#[test]
fn bad_campaigns_are_refused_with_the_field() {
    let refused = |cmd: CampaignCommand| {
        let err = TestFramework::<Campaign>::with(())
            .given_no_previous_events()
            .when(cmd)
            .inspect_result()
            .unwrap_err();
        err.field().unwrap_or_default()
    };
    assert_eq!(refused(create(upgrade(), &[])), "cabinets");
    assert_eq!(refused(create(upgrade(), &["c1", "c1"])), "cabinets");
    let bad_hash = CampaignAction::Upgrade {
        component: "fw".into(),
        version: "2".into(),
        uri: "https://x".into(),
        sha256: "zz".into(),
    };
    assert_eq!(refused(create(bad_hash, &["c1"])), "action.sha256");
    let bad_component = CampaignAction::Upgrade {
        component: "bootloader".into(),
        version: "2".into(),
        uri: "https://x".into(),
        sha256: "ab".repeat(32),
    };
    assert_eq!(refused(create(bad_component, &["c1"])), "action.component");
    let nothing = CampaignAction::Ads {
        add: vec![],
        remove: vec![],
    };
    assert_eq!(refused(create(nothing, &["c1"])), "action");
    let twice = CampaignAction::Ads {
        add: vec![AdSpec {
            ad_id: "a1".into(),
            uri: "https://ads/a1.mp4".into(),
        }],
        remove: vec!["a1".into()],
    };
    assert_eq!(refused(create(twice, &["c1"])), "action");
}

#[test]
fn an_ad_set_is_one_command_per_ad_added_or_removed() {
    let ads = CampaignAction::Ads {
        add: vec![
            AdSpec {
                ad_id: "a1".into(),
                uri: "https://ads/a1.mp4".into(),
            },
            AdSpec {
                ad_id: "a2".into(),
                uri: "https://ads/a2.mp4".into(),
            },
        ],
        remove: vec!["old".into()],
    };
    let types: Vec<_> = ads.commands().iter().map(|c| c.type_name()).collect();
    assert_eq!(types, ["ad_add", "ad_add", "ad_remove"]);
    assert_eq!(upgrade().commands().len(), 1);
    assert_eq!(campaign_cmd_id("cp1", "c1", 0), "camp-cp1-c1-0");
    assert_eq!(issuing_campaign("campaign:cp1"), Some("cp1"));
    assert_eq!(campaign_of_cmd("camp-cp1-wc.c-1-0"), Some("cp1"));
    assert_eq!(campaign_of_cmd("cmd-1"), None);
    assert!(valid_campaign_id("cp0a") && !valid_campaign_id("cp-1") && !valid_campaign_id(""));
    assert_eq!(issuing_campaign("operator"), None);
}

#[test]
fn an_outcome_is_recorded_once_and_only_unknown_may_be_settled_later() {
    use CampaignCommandOutcome::*;
    let base = vec![created(upgrade(), &["c1"])];
    TestFramework::<Campaign>::with(())
        .given(base.clone())
        .when(settle("k", Done))
        .then_expect_events(vec![settled("k", Done)]);
    let mut done = base.clone();
    done.push(settled("k", Done));
    TestFramework::<Campaign>::with(())
        .given(done.clone())
        .when(settle("k", Failed))
        .then_expect_events(vec![]);
    let mut unknown = base;
    unknown.push(settled("k", Unknown));
    TestFramework::<Campaign>::with(())
        .given(unknown.clone())
        .when(settle("k", Done))
        .then_expect_events(vec![settled("k", Done)]);
    TestFramework::<Campaign>::with(())
        .given(unknown)
        .when(settle("k", Unknown))
        .then_expect_events(vec![]);
    TestFramework::<Campaign>::with(())
        .given_no_previous_events()
        .when(settle("k", Done))
        .then_expect_error(CampaignError::NotFound);
}
