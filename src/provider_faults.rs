//! `--provider-faults`: the payment sandboxes' behaviours on demand for `tare sim` and the
//! demo, as one comma-separated list (`duplicate,reorder,delay=1500,drop,system-errors=2,
//! fail-collections=1,fail-refunds=1,reject-risk,slow=12000,pending=3`), turned into the body of
//! `PUT /sandbox/{provider}/behaviour`.

use crate::fleet::ApiClient;
use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

/// Parses a `--provider-faults` list into the behaviour body (`{}` for an empty list).
pub fn parse(list: &str) -> Result<Value, String> {
    let mut body = Map::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (item, None),
        };
        let number = |field: &str, max: u64| -> Result<Value, String> {
            let v = value.ok_or_else(|| format!("`{name}` needs a value: `{name}=N`"))?;
            let n: u64 = v.parse().map_err(|_| format!("`{name}={v}`: not a whole number"))?;
            if n > max {
                return Err(format!("`{name}={v}`: at most {max}"));
            }
            let _ = field;
            Ok(json!(n))
        };
        let flag = || -> Result<Value, String> {
            match value {
                None => Ok(json!(true)),
                Some(v) => Err(format!("`{name}` takes no value (got `{v}`)")),
            }
        };
        let (field, v) = match name {
            "duplicate" => ("duplicate_notifications", flag()?),
            "reorder" => ("reorder_notifications", flag()?),
            "drop" => ("drop_notifications", flag()?),
            "reject-risk" => ("reject_risk", flag()?),
            "delay" => ("delay_notifications_ms", number("delay", 600_000)?),
            "system-errors" => ("system_errors", number("system-errors", 100)?),
            "fail-collections" => ("fail_collections", number("fail-collections", 100)?),
            "fail-refunds" => ("fail_refunds", number("fail-refunds", 100)?),
            "slow" => ("slow_answer_ms", number("slow", 120_000)?),
            "pending" => ("max_pending_per_shopper", number("pending", 1000)?),
            other => {
                return Err(format!(
                    "unknown provider fault `{other}` (duplicate, reorder, drop, reject-risk, delay=MS, system-errors=N, fail-collections=N, fail-refunds=N, slow=MS, pending=N)"
                ))
            }
        };
        if body.insert(field.to_string(), v).is_some() {
            return Err(format!("`{name}` given twice"));
        }
    }
    Ok(Value::Object(body))
}

/// Sets `body` as the behaviour of both sandboxes of the node at `client`.
pub async fn apply(client: &ApiClient, token: &str, body: &Value) -> anyhow::Result<()> {
    for provider in ["wechat", "alipay"] {
        let (st, answer) = client
            .put(&format!("/sandbox/{provider}/behaviour"), token, body)
            .await
            .with_context(|| format!("setting the {provider} sandbox's behaviour"))?;
        if st != reqwest::StatusCode::NO_CONTENT {
            bail!("setting the {provider} sandbox's behaviour: {st} {answer}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_becomes_the_behaviour_body() {
        assert_eq!(parse("").unwrap(), json!({}));
        assert_eq!(
            parse("duplicate, delay=1500,system-errors=2,reject-risk").unwrap(),
            json!({"duplicate_notifications": true, "delay_notifications_ms": 1500, "system_errors": 2, "reject_risk": true})
        );
        assert!(parse("delay").unwrap_err().contains("needs a value"));
        assert!(parse("drop=1").unwrap_err().contains("takes no value"));
        assert!(parse("slow=999999").unwrap_err().contains("at most"));
        assert!(parse("explode").unwrap_err().contains("unknown provider fault"));
        assert!(parse("drop,drop").unwrap_err().contains("twice"));
    }
}
