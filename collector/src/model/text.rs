//! Text keys shared by the imports and the joins.

/// Collapses runs of whitespace to one space and trims.
pub fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The join key of a person's name: lower case, single spaces.
pub fn name_key(name: &str) -> String {
    collapse(name).to_lowercase()
}
