//! Request parameters shared by several endpoints: Patroni's `parse_schedule`.

use super::error::ApiError;
use chrono::{DateTime, FixedOffset};
use serde_json::Value;

/// Patroni's `parse_schedule`: a timestamp with a time zone in the future. Errors carry
/// Patroni's codes (400 without a zone, 422 in the past or unparsable).
pub fn parse_schedule(v: &Value, action: &str) -> Result<DateTime<FixedOffset>, ApiError> {
    let unparsable = || {
        ApiError::Unprocessable(
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"
                .into(),
        )
    };
    let Value::String(s) = v else {
        return Err(unparsable());
    };
    let s = s.trim();
    let with_zone = DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        [
            "%Y-%m-%d %H:%M:%S%.f%:z",
            "%Y-%m-%d %H:%M:%S%.f%z",
            "%Y-%m-%dT%H:%M:%S%.f%z",
            "%Y-%m-%d %H:%M%:z",
            "%Y-%m-%dT%H:%M%:z",
        ]
        .iter()
        .find_map(|f| DateTime::parse_from_str(s, f).ok())
    });
    let t = match with_zone {
        Some(t) => t,
        None => {
            let naive = [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .any(|f| chrono::NaiveDateTime::parse_from_str(s, f).is_ok());
            return Err(if naive {
                ApiError::BadRequest(format!(
                    "Timezone information is mandatory for the scheduled {action}"
                ))
            } else {
                unparsable()
            });
        }
    };
    if t < chrono::Utc::now() {
        return Err(ApiError::Unprocessable(format!(
            "Cannot schedule {action} in the past"
        )));
    }
    Ok(t)
}
