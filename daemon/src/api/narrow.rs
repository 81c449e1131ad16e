//! What a chat token may ask of an agent. A token lives in a browser, so whoever holds
//! it is not the operator: its per-request `options` may only narrow what the agent
//! (and the thread's settings) allow, never widen it. The API key keeps full control.
//!
//! The rule, option by option:
//! - `disallowedTools`: must keep every tool the agent disallows; it may add more.
//! - `maxTurns`, `maxBudgetUsd`: at most the agent's; when the agent sets none (no
//!   limit), any valid value is a narrowing and is accepted.
//! - `permissionMode`: at most as permissive as the mode the turn would otherwise run
//!   in (the thread's, else the agent's, else `bypassPermissions`), ordered
//!   `plan` < `dontAsk` < `default` < `acceptEdits` < `auto` < `bypassPermissions`.
//! - `model`, `systemPrompt`: refused (they change what the agent is, not how far it
//!   may go).
//!
//! A widening attempt is refused with 403 and a message naming the option, rather than
//! silently replaced, so the caller learns its setting had no effect.

use axum::http::StatusCode;

use super::ApiError;
use crate::agents::AgentDef;
use crate::runner::runtime::{TurnOptions, DEFAULT_PERMISSION_MODE};

/// Permission modes from the most restrictive to the most permissive.
const MODE_ORDER: &[&str] = &[
    "plan",
    "dontAsk",
    "default",
    "acceptEdits",
    "auto",
    "bypassPermissions",
];

fn rank(mode: &str) -> usize {
    // Modes are validated before this; an unknown one ranks as the most permissive,
    // so it can never pass as a narrowing.
    MODE_ORDER
        .iter()
        .position(|m| *m == mode)
        .unwrap_or(MODE_ORDER.len())
}

fn refused(option: &str, why: String) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "options.{option}: {why}; a chat token may only narrow the agent's settings \
             (the API key may change them)"
        ),
    )
}

/// Checks that a token's `options` only narrow `agent` (with the thread's permission
/// mode, if the thread sets one).
pub fn check(
    options: &TurnOptions,
    agent: &AgentDef,
    thread_mode: Option<&str>,
) -> Result<(), ApiError> {
    if options.model.is_some() {
        return Err(refused(
            "model",
            "a chat token may not choose the model".into(),
        ));
    }
    if options.system_prompt.is_some() {
        return Err(refused(
            "systemPrompt",
            "a chat token may not replace the system prompt".into(),
        ));
    }
    if let (Some(asked), Some(limit)) = (options.max_turns, agent.max_turns) {
        if asked > limit {
            return Err(refused(
                "maxTurns",
                format!("{asked} is above the agent's {limit}"),
            ));
        }
    }
    if let (Some(asked), Some(limit)) = (options.max_budget_usd, agent.max_budget_usd) {
        if asked > limit {
            return Err(refused(
                "maxBudgetUsd",
                format!("{asked} is above the agent's {limit}"),
            ));
        }
    }
    if let Some(asked) = &options.permission_mode {
        let current = thread_mode
            .or(agent.permission_mode.as_deref())
            .unwrap_or(DEFAULT_PERMISSION_MODE);
        if rank(asked) > rank(current) {
            return Err(refused(
                "permissionMode",
                format!("{asked:?} is more permissive than this turn's {current:?}"),
            ));
        }
    }
    if let Some(asked) = &options.disallowed_tools {
        let dropped: Vec<&str> = agent
            .disallowed_tools
            .iter()
            .filter(|tool| !asked.contains(tool))
            .map(String::as_str)
            .collect();
        if !dropped.is_empty() {
            return Err(refused(
                "disallowedTools",
                format!(
                    "it leaves out {}, which the agent disallows (include them, and add \
                     any others)",
                    dropped.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::SystemPrompt;

    fn agent() -> AgentDef {
        AgentDef {
            max_turns: Some(2),
            max_budget_usd: Some(0.1),
            disallowed_tools: vec!["Bash".into(), "WebFetch".into()],
            permission_mode: Some("acceptEdits".into()),
            ..Default::default()
        }
    }

    fn refused_option(options: TurnOptions, thread_mode: Option<&str>) -> String {
        let e = check(&options, &agent(), thread_mode).expect_err("widening is refused");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        e.message
    }

    #[test]
    fn widening_is_refused_and_names_the_option() {
        let cases = [
            (
                TurnOptions {
                    disallowed_tools: Some(vec![]),
                    ..Default::default()
                },
                "disallowedTools",
            ),
            (
                TurnOptions {
                    disallowed_tools: Some(vec!["Bash".into()]),
                    ..Default::default()
                },
                "WebFetch",
            ),
            (
                TurnOptions {
                    max_turns: Some(3),
                    ..Default::default()
                },
                "maxTurns",
            ),
            (
                TurnOptions {
                    max_budget_usd: Some(1000.0),
                    ..Default::default()
                },
                "maxBudgetUsd",
            ),
            (
                TurnOptions {
                    model: Some("claude-opus".into()),
                    ..Default::default()
                },
                "model",
            ),
            (
                TurnOptions {
                    system_prompt: Some(SystemPrompt::Text("obey me".into())),
                    ..Default::default()
                },
                "systemPrompt",
            ),
            (
                TurnOptions {
                    permission_mode: Some("bypassPermissions".into()),
                    ..Default::default()
                },
                "permissionMode",
            ),
        ];
        for (options, named) in cases {
            let message = refused_option(options, None);
            assert!(message.contains(named), "{named}: {message}");
        }
    }

    #[test]
    fn narrowing_passes() {
        let options = TurnOptions {
            disallowed_tools: Some(vec!["WebFetch".into(), "Bash".into(), "Edit".into()]),
            max_turns: Some(1),
            max_budget_usd: Some(0.1),
            permission_mode: Some("plan".into()),
            ..Default::default()
        };
        check(&options, &agent(), None).expect("narrower");
        check(&TurnOptions::default(), &agent(), None).expect("nothing asked");
    }

    #[test]
    fn an_agent_without_limits_takes_any_limit() {
        let options = TurnOptions {
            max_turns: Some(1000),
            max_budget_usd: Some(1000.0),
            disallowed_tools: Some(vec![]),
            permission_mode: Some("bypassPermissions".into()),
            ..Default::default()
        };
        // No limits, no disallowed tools, and the default mode is bypassPermissions.
        check(&options, &AgentDef::default(), None).expect("a limit narrows no limit");
    }

    #[test]
    fn the_thread_mode_counts() {
        let options = TurnOptions {
            permission_mode: Some("acceptEdits".into()),
            ..Default::default()
        };
        check(&options, &agent(), None).expect("the agent's own mode");
        let message = refused_option(options, Some("plan"));
        assert!(message.contains("\"plan\""), "{message}");
    }
}
