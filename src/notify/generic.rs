//! The generic webhook: the run's `run.json`, as it is on disk, POSTed as `application/json`.

use crate::state::records::RunRecord;

/// The body for a generic webhook: the run record serialised exactly as `run.json` holds it.
pub fn payload(record: &RunRecord) -> Result<Vec<u8>, String> {
    serde_json::to_vec(record).map_err(|e| format!("cannot serialise the run record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::sample_record;
    use crate::state::records::RunResult;

    #[test]
    fn the_body_is_the_run_record() {
        let record = sample_record(RunResult::Failure, "master");
        let body = payload(&record).unwrap();
        let back: RunRecord = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, record);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["result"], "failure");
        assert_eq!(value["steps"][0]["exit_code"], 2);
    }
}
