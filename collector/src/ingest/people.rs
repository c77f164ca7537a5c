//! Directory imports: a CSV of people (`email,name,department,manager`), also accepting the
//! SCIM attribute names of RFC 7643 and its enterprise extension (`userName`,
//! `emails[0].value`, `displayName`, `name.givenName`, `department`, `manager.value`...).

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

use super::parse;
use super::table::{Header, LayoutError, cell};
use super::{RowError, Tally};
use crate::model::Person;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:";

/// Where each field lives in the header.
#[derive(Clone, Debug)]
pub struct Layout {
    email: usize,
    name: Option<usize>,
    given: Option<usize>,
    family: Option<usize>,
    department: Option<usize>,
    manager: Option<usize>,
}

impl Layout {
    /// Locates the columns.
    ///
    /// # Errors
    /// No email column.
    pub fn new(h: &Header) -> Result<Self, LayoutError> {
        let dept = format!("{ENTERPRISE}department");
        let mgr_value = format!("{ENTERPRISE}manager.value");
        let mgr = format!("{ENTERPRISE}manager");
        let mgr_name = format!("{ENTERPRISE}manager.displayName");
        Ok(Layout {
            email: h
                .find(&[
                    "email",
                    "emails[0].value",
                    "emails.work.value",
                    "emails",
                    "mail",
                    "userPrincipalName",
                    "userName",
                ])
                .ok_or(LayoutError::NoEmail)?,
            name: h.find(&["name", "displayName", "name.formatted", "full_name", "fullName"]),
            given: h.find(&["name.givenName", "givenName", "first_name"]),
            family: h.find(&["name.familyName", "familyName", "last_name"]),
            department: h.find(&["department", &dept, "enterprise.department", "costCenter"]),
            manager: h.find(&[
                "manager",
                "manager_email",
                "manager.value",
                &mgr_value,
                &mgr,
                "manager.displayName",
                &mgr_name,
            ]),
        })
    }

    /// One record as a person.
    ///
    /// # Errors
    /// The email cell is not an email address.
    pub fn row(
        &self,
        h: &Header,
        file: &str,
        rec: &csv::StringRecord,
        line: u64,
        tally: &mut Tally,
    ) -> Result<Option<Person>, RowError> {
        if rec.iter().all(|c| c.trim().is_empty()) {
            tally.skipped = tally.skipped.saturating_add(1);
            return Ok(None);
        }
        let email = cell(rec, Some(self.email));
        if !parse::looks_like_email(email) {
            let reason = format!("not an email address: {email:?}");
            return Err(RowError::at(file, h, line, Some(self.email), reason));
        }
        let mut name = parse::collapse(cell(rec, self.name));
        if name.is_empty() {
            name =
                parse::collapse(&format!("{} {}", cell(rec, self.given), cell(rec, self.family)));
        }
        let manager = parse::collapse(cell(rec, self.manager));
        let manager =
            if parse::looks_like_email(&manager) { manager.to_ascii_lowercase() } else { manager };
        Ok(Some(Person {
            email: email.to_ascii_lowercase(),
            name,
            department: parse::collapse(cell(rec, self.department)),
            manager: (!manager.is_empty()).then_some(manager),
        }))
    }
}
