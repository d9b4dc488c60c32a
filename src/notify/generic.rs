//! The generic webhook: the run's `run.json`, as it is on disk, POSTed as `application/json`; with
//! `report_url`, one more key, `url`: the run's page (SPEC §9).

use crate::state::records::RunRecord;

/// The body for a generic webhook: the run record serialised exactly as `run.json` holds it, and
/// `url` when there is one.
pub fn payload(record: &RunRecord, url: Option<&str>) -> Result<Vec<u8>, String> {
    let cannot = |e: serde_json::Error| format!("cannot serialise the run record: {e}");
    let Some(url) = url else {
        return serde_json::to_vec(record).map_err(cannot);
    };
    let mut value = serde_json::to_value(record).map_err(cannot)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("url".into(), serde_json::Value::String(url.to_string()));
    }
    serde_json::to_vec(&value).map_err(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::sample_record;
    use crate::state::records::RunResult;

    #[test]
    fn the_body_is_the_run_record() {
        let record = sample_record(RunResult::Failure, "master");
        let body = payload(&record, None).unwrap();
        let back: RunRecord = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, record);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["result"], "failure");
        assert_eq!(value["steps"][0]["exit_code"], 2);
        assert!(value.get("url").is_none());
        let body = payload(&record, Some("https://ci.example.org/app/7.html")).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["url"], "https://ci.example.org/app/7.html");
        assert_eq!(value["run"], 7);
    }
}
