//! Listing sandboxes: `GET /v2/sandboxes` (metadata, state, template and start
//! filters, `x-next-token` pages) and the deprecated `GET /sandboxes`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{RawQuery, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{listed, ControlError, E2bState, MAX_PAGE};
use crate::sandbox::{Sandbox, Status};
use crate::store::millis;

/// `GET /sandboxes` (deprecated): every sandbox, with an optional
/// `metadata` filter.
pub async fn list_v1(
    State(state): State<E2bState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<serde_json::Value>>, ControlError> {
    let mut filter = Filter::parse(query.as_deref().unwrap_or(""))?;
    filter.limit = usize::MAX;
    let (page, _) = filter.page(&state);
    Ok(Json(page))
}

/// `GET /v2/sandboxes`: a page of sandboxes; the next page's token is the
/// `x-next-token` header.
pub async fn list(
    State(state): State<E2bState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ControlError> {
    let filter = Filter::parse(query.as_deref().unwrap_or(""))?;
    let (page, next) = filter.page(&state);
    let mut response = Json(page).into_response();
    if let Some(token) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert("x-next-token", token);
    }
    Ok(response)
}

/// The query of a list.
#[derive(Debug, Default)]
struct Filter {
    metadata: Vec<(String, String)>,
    /// Whether running sandboxes are asked for (a sandbox paused for being idle is
    /// running to E2B clients).
    running: bool,
    /// Whether sandboxes a client paused are asked for.
    paused: bool,
    started_after: Option<SystemTime>,
    template: Option<String>,
    ascending: bool,
    limit: usize,
    /// The sort key of the last item of the previous page.
    after: Option<(i64, String)>,
}

impl Filter {
    fn parse(query: &str) -> Result<Self, ControlError> {
        let mut filter = Self {
            limit: MAX_PAGE,
            ..Self::default()
        };
        let mut states = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "metadata" => {
                    // An encoded `k=v&…` string, its keys and values encoded again.
                    for (k, v) in url::form_urlencoded::parse(value.as_bytes()) {
                        let k = percent_decoded(&k);
                        let v = percent_decoded(&v);
                        filter.metadata.push((k, v));
                    }
                }
                "state" => states.extend(value.split(',').map(str::to_owned)),
                "startedAfter" => {
                    let t = crate::rfc3339::parse(&value).ok_or_else(|| {
                        ControlError::bad_request("startedAfter: not an RFC 3339 time")
                    })?;
                    filter.started_after = Some(t);
                }
                "template" => filter.template = Some(value.into_owned()),
                "order" => match &*value {
                    "asc" => filter.ascending = true,
                    "desc" => filter.ascending = false,
                    other => {
                        return Err(ControlError::bad_request(format!(
                            "order: {other:?} is not asc or desc"
                        )))
                    }
                },
                "limit" => {
                    let limit: usize = value
                        .parse()
                        .map_err(|_| ControlError::bad_request("limit: not a number"))?;
                    if !(1..=MAX_PAGE).contains(&limit) {
                        return Err(ControlError::bad_request(format!(
                            "limit: between 1 and {MAX_PAGE}"
                        )));
                    }
                    filter.limit = limit;
                }
                "nextToken" => {
                    let bad = || ControlError::bad_request("nextToken: not a token of this API");
                    let (ms, id) = value.split_once('.').ok_or_else(bad)?;
                    filter.after = Some((ms.parse().map_err(|_| bad())?, id.to_owned()));
                }
                _ => {}
            }
        }
        for state in &states {
            match state.as_str() {
                "running" => filter.running = true,
                "paused" => filter.paused = true,
                other => {
                    return Err(ControlError::bad_request(format!(
                        "state: {other:?} is not running or paused"
                    )))
                }
            }
        }
        if states.is_empty() {
            (filter.running, filter.paused) = (true, true);
        }
        Ok(filter)
    }

    /// The matching sandboxes after the token, at most a page, and the next token.
    fn page(&self, state: &E2bState) -> (Vec<serde_json::Value>, Option<String>) {
        let mut matching: Vec<(i64, String, Arc<Sandbox>)> = state
            .sandboxes
            .list()
            .into_iter()
            .filter(|view| matches!(view.status, Status::Active | Status::Paused))
            .filter_map(|view| state.sandboxes.peek(&view.id))
            .filter(|sb| {
                self.metadata
                    .iter()
                    .all(|(k, v)| sb.attributes.metadata.get(k) == Some(v))
                    && self.template.as_ref().is_none_or(|t| *t == sb.agent_slug)
                    && self
                        .started_after
                        .is_none_or(|t| millis(sb.created_at) > millis(t))
                    && if sb.held() { self.paused } else { self.running }
            })
            .map(|sb| (millis(sb.created_at), sb.id.clone(), sb))
            .collect();
        matching.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        if !self.ascending {
            matching.reverse();
        }
        let start = match &self.after {
            None => 0,
            Some((ms, id)) => matching
                .iter()
                .position(|(m, i, _)| {
                    let key = (*m, i.as_str());
                    let after = (*ms, id.as_str());
                    if self.ascending {
                        key > after
                    } else {
                        key < after
                    }
                })
                .unwrap_or(matching.len()),
        };
        let rest = &matching[start..];
        let page: Vec<_> = rest.iter().take(self.limit).collect();
        let next = (rest.len() > page.len())
            .then(|| page.last().map(|(ms, id, _)| format!("{ms}.{id}")))
            .flatten();
        let items = page
            .iter()
            .map(|(_, _, sb)| serde_json::to_value(listed(state, sb, false)).unwrap_or_default())
            .collect();
        (items, next)
    }
}

/// Undoes the second encoding the SDK gives metadata keys and values.
fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_parse() {
        let f = Filter::parse(
            "metadata=a%3D1%26b%3Dx%2520y&state=running,paused&limit=2&order=asc&nextToken=5.sb_x",
        )
        .expect("parses");
        assert_eq!(
            f.metadata,
            vec![("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
        assert!(f.running && f.paused && f.ascending);
        assert_eq!(f.limit, 2);
        assert_eq!(f.after, Some((5, "sb_x".into())));
        let paused = Filter::parse("state=paused").expect("parses");
        assert!(!paused.running && paused.paused);
        let both = Filter::parse("").expect("parses");
        assert!(both.running && both.paused);
        assert!(Filter::parse("state=gone").is_err());
        assert!(Filter::parse("limit=0").is_err());
        assert!(Filter::parse("nextToken=x").is_err());
        assert!(Filter::parse("startedAfter=2026-01-02T05:04:05.678%2B02:00").is_ok());
        assert!(Filter::parse("startedAfter=%C3%A9%C3%A9%C3%A9").is_err());
    }
}
