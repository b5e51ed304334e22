//! The Dashboards pages: the list (search, import, new, duplicate, delete)
//! and one dashboard drawn from its saved Grafana JSON. Both are shells;
//! `web/static/dashboards.js` reads `/api/v1/dashboards` and runs every
//! panel's queries through the query APIs.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::render;
use crate::api::AppState;

#[derive(Template)]
#[template(path = "dashboards.html")]
struct ListPage {
    nav: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    nav: &'static str,
    uid: String,
}

pub async fn list() -> Response {
    render(ListPage { nav: "dashboards" })
}

pub async fn view(State(state): State<AppState>, Path(uid): Path<String>) -> Response {
    if let Err(err) = crate::dashboards::check_uid(&uid) {
        return (StatusCode::BAD_REQUEST, err).into_response();
    }
    if state.dashboards.entry(&uid).is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("no dashboard with uid {uid:?}; see /ui/dashboards\n"),
        )
            .into_response();
    }
    render(DashboardPage {
        nav: "dashboards",
        uid,
    })
}
