//! `GET /metrics` (an extension): Prometheus text for operators.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::readiness::Phase;
use crate::sandbox::Status;

/// The metrics, in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let sandboxes = state.sandboxes.list();
    let count = |status: Status| sandboxes.iter().filter(|s| s.status == status).count();
    let model = state.sandboxes.model_totals();
    let ready = u8::from(state.readiness.phase() == Phase::Ready);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sandboxd_ready Whether sandboxes can be created (1) or not yet (0)."
    );
    let _ = writeln!(out, "# TYPE sandboxd_ready gauge\nsandboxd_ready {ready}");
    let _ = writeln!(out, "# HELP sandboxd_sandboxes Sandboxes by status.");
    let _ = writeln!(out, "# TYPE sandboxd_sandboxes gauge");
    for (name, status) in [
        ("creating", Status::Creating),
        ("active", Status::Active),
        ("paused", Status::Paused),
        ("error", Status::Error),
        ("expired", Status::Expired),
    ] {
        let _ = writeln!(
            out,
            "sandboxd_sandboxes{{status=\"{name}\"}} {}",
            count(status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP sandboxd_pool_ready Warm containers ready to be claimed (not sandboxes).\n\
         # TYPE sandboxd_pool_ready gauge\nsandboxd_pool_ready {}",
        state.sandboxes.pool_ready()
    );
    let _ = writeln!(
        out,
        "# HELP sandboxd_pool_max The most warm containers of one shape (a pool grows \
         toward recent bursts of creates up to it).\n\
         # TYPE sandboxd_pool_max gauge\nsandboxd_pool_max {}",
        state.sandboxes.pool_max()
    );
    let _ = writeln!(out, "# HELP sandboxd_turns_streaming Turns running now.");
    let _ = writeln!(
        out,
        "# TYPE sandboxd_turns_streaming gauge\nsandboxd_turns_streaming {}",
        state.sandboxes.streaming_turns()
    );
    for (name, help, value) in [
        (
            "sandboxd_model_requests",
            "Model requests forwarded for current sandboxes.",
            model.requests,
        ),
        (
            "sandboxd_model_input_tokens",
            "Input tokens reported by the model upstream.",
            model.input_tokens,
        ),
        (
            "sandboxd_model_output_tokens",
            "Output tokens reported by the model upstream.",
            model.output_tokens,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sandboxd_model_cost_usd Model spend of current sandboxes at list prices, in USD.\n\
         # TYPE sandboxd_model_cost_usd gauge\nsandboxd_model_cost_usd {}",
        model.cost_usd
    );
    if let Some(disk) = state.sandboxes.state_disk() {
        for (name, help, value) in [
            (
                "sandboxd_state_disk_free_bytes",
                "Free bytes on the state directory's disk.",
                disk.free_bytes,
            ),
            (
                "sandboxd_state_disk_reserve_bytes",
                "Bytes sandboxd keeps free there (--reserve-disk-mb).",
                disk.reserve_bytes,
            ),
            (
                "sandboxd_state_disk_low",
                "Whether less than the reserve is free (creates are refused).",
                u64::from(disk.low()),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP sandboxd_read_only_homes Sandboxes whose home turned read-only when the \
         state disk filled.\n# TYPE sandboxd_read_only_homes gauge\nsandboxd_read_only_homes {}",
        state.sandboxes.read_only_homes()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
