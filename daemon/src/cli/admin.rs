//! `sandboxd env …` and `sandboxd reload`: small admin calls to a running daemon.
//! Variable values go to the daemon and are never printed.

use serde_json::{json, Value};

use crate::config::{DaemonArgs, EnvAction, EnvArgs};

/// Runs `sandboxd env …`; returns the exit code.
pub async fn env(args: EnvArgs, key: String) -> anyhow::Result<i32> {
    let daemon = &args.daemon;
    match args.action {
        EnvAction::Set { agent, vars } => {
            let vars = parse_vars(&vars)?;
            let body = json!({ "vars": vars });
            let (ok, reply) = call(
                daemon,
                &key,
                "PUT",
                &format!("/v1/agents/{agent}/env"),
                Some(body),
            )
            .await?;
            if ok {
                let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                println!("set {} for {agent}", names.join(", "));
            }
            Ok(report(ok, &reply))
        }
        EnvAction::List { agent } => {
            let (ok, reply) = call(
                daemon,
                &key,
                "GET",
                &format!("/v1/agents/{agent}/env"),
                None,
            )
            .await?;
            if ok {
                for name in reply["names"].as_array().into_iter().flatten() {
                    println!("{}", name.as_str().unwrap_or_default());
                }
            }
            Ok(report(ok, &reply))
        }
        EnvAction::Remove { agent, names } => {
            for name in names {
                let path = format!("/v1/agents/{agent}/env/{name}");
                let (ok, reply) = call(daemon, &key, "DELETE", &path, None).await?;
                if !ok {
                    return Ok(report(ok, &reply));
                }
                println!("removed {name} from {agent}");
            }
            Ok(0)
        }
    }
}

/// Runs `sandboxd reload`; returns the exit code.
pub async fn reload(args: DaemonArgs, key: String) -> anyhow::Result<i32> {
    let (ok, reply) = call(&args, &key, "POST", "/v1/agents/reload", None).await?;
    if ok {
        println!("{} agents", reply["agents"]);
        for problem in reply["problems"].as_array().into_iter().flatten() {
            println!(
                "not loaded: {}: {}",
                problem["path"].as_str().unwrap_or_default(),
                problem["message"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(report(ok, &reply))
}

/// `NAME=value…`, or `NAME value`.
fn parse_vars(vars: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    if let [name, value] = vars {
        if !name.contains('=') {
            return Ok([(name.clone(), value.clone())].into());
        }
    }
    vars.iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{:?} is not NAME=value",
                        pair.split('=').next().unwrap_or_default()
                    )
                })
        })
        .collect()
}

fn report(ok: bool, reply: &Value) -> i32 {
    if ok {
        return 0;
    }
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or("request failed");
    eprintln!("error: {message}");
    1
}

async fn call(
    daemon: &DaemonArgs,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(bool, Value)> {
    let url = format!("{}{path}", daemon.url.trim_end_matches('/'));
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the daemon at {}: {e}", daemon.url))?;
    let ok = response.status().is_success();
    let text = response.text().await.unwrap_or_default();
    Ok((ok, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_parse_in_both_forms() {
        let two = parse_vars(&["KEY".into(), "a=b".into()]).expect("pair");
        assert_eq!(two["KEY"], "a=b");
        let pairs = parse_vars(&["A=1".into(), "B=x=y".into()]).expect("pairs");
        assert_eq!(pairs["B"], "x=y");
        let bad = parse_vars(&["A=1".into(), "B".into(), "C=3".into()]).unwrap_err();
        assert!(bad.to_string().contains('B'));
    }
}
