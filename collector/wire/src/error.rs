//! [`ErrorBody`]: the JSON body of every 4xx and 5xx answer.

use serde::{Deserialize, Serialize};

/// Why a request failed, for a person or a log line to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What failed, in lowercase words.
    pub error: String,
    /// The JSON path of the offending field (`sightings[3].value`), when one field is to blame.
    #[serde(default)]
    pub field: Option<String>,
}
