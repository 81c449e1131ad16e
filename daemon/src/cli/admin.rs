//! `sandboxd env …`, `sandboxd reload` and `sandboxd doctor`: small admin calls to a
//! running daemon (variable values go to the daemon and are never printed); and
//! `sandboxd state …`, the store's backups, with the daemon stopped.

use serde_json::{json, Value};

use super::http::Daemon;
use crate::config::{DaemonArgs, DoctorArgs, EnvAction, EnvArgs, StateAction, StateArgs};
use crate::store::{backup, lock};
use reqwest::Method;

/// Runs `sandboxd doctor`: removes what `--remove` names, then lists what is still
/// quarantined and how to act on it; returns the exit code (1 when something is).
pub async fn doctor(args: DoctorArgs) -> anyhow::Result<i32> {
    let daemon = Daemon::new(&args.client)?;
    let mut code = 0;
    for id in &args.remove {
        match daemon
            .call(Method::DELETE, &format!("/v1/quarantine/{id}"), None)
            .await?
        {
            Ok(_) => println!("removed {id} for good"),
            Err(e) => {
                eprintln!("error: {id}: {e}");
                code = 1;
            }
        }
    }
    let listed = match daemon.call(Method::GET, "/v1/quarantine", None).await? {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let rows = listed.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("nothing quarantined: every sandbox of this daemon has its record");
        return Ok(code);
    }
    println!(
        "{} sandbox(es) have no record in the store; they are stopped and kept:",
        rows.len()
    );
    for row in &rows {
        let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        println!(
            "  {}  container {}  directory {}",
            text(&row["id"]),
            text(&row["container"]),
            text(&row["directory"])
        );
    }
    println!(
        "To bring them back: stop the daemon, put a copy of state.db that knows them in \
         the state directory, and start it again (it re-adopts them).\n\
         To remove one for good: sandboxd doctor --remove <id>"
    );
    Ok(1)
}

/// Runs `sandboxd state …`; returns the exit code.
pub fn state(args: StateArgs) -> anyhow::Result<i32> {
    let dir = args.dir()?;
    match args.action {
        StateAction::Backups => {
            let found = backup::backups(&dir.join(backup::DIR));
            if found.is_empty() {
                println!("no backups in {}", dir.join(backup::DIR).display());
            }
            for path in found {
                match backup::check(&path) {
                    Ok(()) => println!("{}  ok", path.display()),
                    Err(e) => println!("{}  damaged: {e}", path.display()),
                }
            }
            Ok(0)
        }
        StateAction::Restore { from } => {
            // The daemon must not have the store open while it is replaced.
            let _lock = lock::lock(&dir).map_err(anyhow::Error::msg)?;
            let restored = backup::restore(&dir, from.as_deref()).map_err(anyhow::Error::msg)?;
            println!("restored {}", restored.from.display());
            if let Some(aside) = restored.moved_aside {
                println!("the replaced state.db is kept as {}", aside.display());
            }
            println!(
                "start the daemon: it re-adopts the sandboxes this store knows and \
                 quarantines (keeps) what it does not"
            );
            Ok(0)
        }
    }
}

/// Runs `sandboxd env …`; returns the exit code.
pub async fn env(args: EnvArgs, key: String) -> anyhow::Result<i32> {
    let daemon = &Daemon::with_key(&args.daemon, key);
    match args.action {
        EnvAction::Set { agent, vars } => {
            let vars = parse_vars(&vars)?;
            let body = json!({ "vars": vars });
            let reply = daemon
                .call(Method::PUT, &format!("/v1/agents/{agent}/env"), Some(body))
                .await?;
            if reply.is_ok() {
                let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                println!("set {} for {agent}", names.join(", "));
            }
            Ok(report(&reply))
        }
        EnvAction::List { agent } => {
            let reply = daemon
                .call(Method::GET, &format!("/v1/agents/{agent}/env"), None)
                .await?;
            if let Ok(reply) = &reply {
                for name in reply["names"].as_array().into_iter().flatten() {
                    println!("{}", name.as_str().unwrap_or_default());
                }
            }
            Ok(report(&reply))
        }
        EnvAction::Remove { agent, names } => {
            for name in names {
                let path = format!("/v1/agents/{agent}/env/{name}");
                let reply = daemon.call(Method::DELETE, &path, None).await?;
                if reply.is_err() {
                    return Ok(report(&reply));
                }
                println!("removed {name} from {agent}");
            }
            Ok(0)
        }
    }
}

/// Runs `sandboxd reload`; returns the exit code.
pub async fn reload(args: DaemonArgs, key: String) -> anyhow::Result<i32> {
    let reply = Daemon::with_key(&args, key)
        .call(Method::POST, "/v1/agents/reload", None)
        .await?;
    if let Ok(reply) = &reply {
        println!("{} agents", reply["agents"]);
        for problem in reply["problems"].as_array().into_iter().flatten() {
            println!(
                "not loaded: {}: {}",
                problem["path"].as_str().unwrap_or_default(),
                problem["message"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(report(&reply))
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

fn report(result: &Result<Value, String>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
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
