//! Request ids `{unix_millis}-{random_u64}` (spec 30-proxy §7).

/// Id of the current request, stored in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A new request id.
pub fn new_request_id() -> RequestId {
    let millis = chrono::Utc::now().timestamp_millis();
    RequestId(format!("{millis}-{}", rand::random::<u64>()))
}
