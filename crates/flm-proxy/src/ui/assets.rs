//! The built app, embedded in the binary (`ui/dist` at build time).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "../../ui/dist/"]
struct Dist;

/// `/assets/*` file names carry a content hash: cacheable for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Shown instead of the app when the binary was built without it: an error page
/// with the fix, not a placeholder screen.
const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>FLM: app not built</title></head><body><h1>The FLM app is not part of this build</h1><p>This <code>flm</code> binary was compiled while <code>ui/dist</code> was empty, so it cannot show the app.</p><p>Build the app, then FLM again:</p><pre>cd ui &amp;&amp; npm ci &amp;&amp; npm run build\ncd .. &amp;&amp; cargo build --release</pre><p>Then run <code>flm ui</code> again.</p></body></html>";

/// A file of the app by path (without the leading `/`), if embedded.
pub fn file(path: &str) -> Option<Response> {
    let f = Dist::get(path)?;
    let mime = f.metadata.mimetype().to_owned();
    let mut resp = (StatusCode::OK, f.data.into_owned()).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        "no-store"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Some(resp)
}

/// `index.html`, or the "not built" page (500: the binary is incomplete).
pub fn index() -> Response {
    file("index.html").unwrap_or_else(|| {
        let mut resp = (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::response::Html(NOT_BUILT),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    })
}
