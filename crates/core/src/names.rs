//! Function names, partial and full ARNs, and the account they live in.
//!
//! Every operation that takes a `FunctionName` accepts the three forms Lambda accepts: a bare name
//! (`my-fn`), a partial ARN (`123456789012:function:my-fn`) and a full ARN
//! (`arn:aws:lambda:us-east-1:123456789012:function:my-fn`), each optionally followed by
//! `:qualifier`.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::{ServiceError, constraint_violation};

/// The longest function name (the part after `function:`).
pub const MAX_FUNCTION_NAME_LEN: usize = 64;
/// The longest `FunctionName` member in operations that create or update a function.
pub const MAX_FUNCTION_REF_LEN: usize = 140;
/// The longest `FunctionName` member in operations that read or delete a function.
pub const MAX_NAMESPACED_REF_LEN: usize = 256;

/// The pattern botocore's model gives for `FunctionName`, quoted in validation messages.
const FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?";

static FUNCTION_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^{FUNCTION_NAME_PATTERN}$")).expect("the model's pattern is a valid regex")
});

/// The region and account every resource of this server belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountContext {
    pub region: String,
    pub account_id: String,
}

impl AccountContext {
    pub fn new(region: impl Into<String>, account_id: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account_id: account_id.into(),
        }
    }

    /// `arn:aws:lambda:<region>:<account>:function:<name>`
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account_id
        )
    }

    /// The ARN of one version or alias of a function.
    pub fn qualified_function_arn(&self, name: &str, qualifier: &str) -> String {
        format!("{}:{qualifier}", self.function_arn(name))
    }
}

/// A parsed reference to a function, as a caller wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
}

/// Which operation family a reference is validated for: the limits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefUse {
    /// CreateFunction, UpdateFunctionCode, UpdateFunctionConfiguration (at most 140 characters).
    Write,
    /// GetFunction, DeleteFunction and other reads (at most 256 characters).
    Read,
}

impl FunctionRef {
    /// Parse any accepted form of `FunctionName`, checking it belongs to `account`.
    pub fn parse(
        input: &str,
        account: &AccountContext,
        usage: RefUse,
    ) -> Result<Self, ServiceError> {
        let max = match usage {
            RefUse::Write => MAX_FUNCTION_REF_LEN,
            RefUse::Read => MAX_NAMESPACED_REF_LEN,
        };
        let mut violations = Vec::new();
        let length = input.chars().count();
        if length > max {
            violations.push(constraint_violation(
                input,
                "functionName",
                &format!("Member must have length less than or equal to {max}"),
            ));
        }
        if length == 0 {
            violations.push(constraint_violation(
                input,
                "functionName",
                "Member must have length greater than or equal to 1",
            ));
        }
        let captures = FUNCTION_REF.captures(input);
        if captures.is_none() {
            violations.push(constraint_violation(
                input,
                "functionName",
                &format!("Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"),
            ));
        }
        let Some(captures) = captures.filter(|_| violations.is_empty()) else {
            return Err(ServiceError::Validation(violations));
        };
        let name = captures.get(10).map_or("", |m| m.as_str()).to_owned();
        let qualifier = captures.get(12).map(|m| m.as_str().to_owned());
        let region = captures.get(3).map(|m| m.as_str().trim_end_matches(':'));
        let account_id = captures.get(8).map(|m| m.as_str().trim_end_matches(':'));
        let is_arn = captures.get(1).is_some();
        let has_function_segment = captures.get(9).is_some();
        // A region or account without the `function:` segment is not a reference Lambda accepts.
        if (region.is_some() || account_id.is_some()) && !has_function_segment
            || is_arn && (region.is_none() || account_id.is_none())
        {
            return Err(ServiceError::constraint(
                input,
                "functionName",
                &format!("Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"),
            ));
        }
        if let Some(region) = region
            && region != account.region
        {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Functions from '{region}' are not reachable in this region ('{}')",
                account.region
            )));
        }
        if name.chars().count() > MAX_FUNCTION_NAME_LEN {
            return Err(ServiceError::constraint(
                &name,
                "functionName",
                &format!("Member must have length less than or equal to {MAX_FUNCTION_NAME_LEN}"),
            ));
        }
        if let Some(account_id) = account_id
            && account_id != account.account_id
        {
            return Err(ServiceError::ResourceNotFound(format!(
                "Function not found: {input}"
            )));
        }
        Ok(Self { name, qualifier })
    }

    /// Merge a qualifier given in the name with one given as `?Qualifier=`.
    pub fn with_query_qualifier(mut self, query: Option<&str>) -> Result<Self, ServiceError> {
        match (self.qualifier.as_deref(), query) {
            (Some(from_name), Some(from_query)) if from_name != from_query => {
                Err(ServiceError::InvalidParameterValue(
                    "The derived qualifier from the function name does not match the specified qualifier."
                        .to_owned(),
                ))
            }
            (None, Some(from_query)) => {
                self.qualifier = Some(from_query.to_owned());
                Ok(self)
            }
            _ => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountContext {
        AccountContext::new("us-east-1", "000000000000")
    }

    fn parse(input: &str) -> Result<FunctionRef, ServiceError> {
        FunctionRef::parse(input, &account(), RefUse::Read)
    }

    #[test]
    fn accepts_name_partial_arn_and_full_arn() {
        let expected = FunctionRef {
            name: "my-fn".into(),
            qualifier: None,
        };
        assert_eq!(parse("my-fn").unwrap(), expected);
        assert_eq!(parse("000000000000:function:my-fn").unwrap(), expected);
        assert_eq!(
            parse("arn:aws:lambda:us-east-1:000000000000:function:my-fn").unwrap(),
            expected
        );
    }

    #[test]
    fn reads_qualifiers_from_every_form() {
        for input in [
            "my_fn:$LATEST",
            "000000000000:function:my_fn:$LATEST",
            "arn:aws:lambda:us-east-1:000000000000:function:my_fn:$LATEST",
        ] {
            let parsed = parse(input).unwrap();
            assert_eq!(parsed.name, "my_fn");
            assert_eq!(parsed.qualifier.as_deref(), Some("$LATEST"));
        }
    }

    #[test]
    fn name_of_64_characters_is_accepted_and_65_rejected() {
        let ok = "a".repeat(64);
        assert_eq!(parse(&ok).unwrap().name, ok);
        let long = "a".repeat(65);
        let err = parse(&long).unwrap_err();
        assert!(matches!(err, ServiceError::Validation(_)));
        assert!(
            err.to_string()
                .contains("Member must have length less than or equal to 64")
        );
    }

    #[test]
    fn write_references_are_limited_to_140_characters() {
        let arn = format!(
            "arn:aws:lambda:us-east-1:000000000000:function:{}",
            "b".repeat(94)
        );
        assert_eq!(arn.len(), 141);
        let err = FunctionRef::parse(&arn, &account(), RefUse::Write).unwrap_err();
        assert!(err.to_string().contains("less than or equal to 140"));
    }

    #[test]
    fn rejects_bad_characters_and_empty_names() {
        assert!(matches!(parse("my fn"), Err(ServiceError::Validation(_))));
        assert!(matches!(parse("my.fn"), Err(ServiceError::Validation(_))));
        assert!(matches!(parse(""), Err(ServiceError::Validation(_))));
        assert!(matches!(
            parse("us-east-1:my-fn"),
            Err(ServiceError::Validation(_))
        ));
    }

    #[test]
    fn other_regions_and_accounts_are_not_found_here() {
        assert!(matches!(
            parse("arn:aws:lambda:eu-west-1:000000000000:function:f"),
            Err(ServiceError::InvalidParameterValue(_))
        ));
        assert!(matches!(
            parse("arn:aws:lambda:us-east-1:111111111111:function:f"),
            Err(ServiceError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn query_qualifier_must_agree_with_the_name() {
        let r = parse("f:1").unwrap();
        assert!(r.clone().with_query_qualifier(Some("1")).is_ok());
        assert!(matches!(
            r.with_query_qualifier(Some("2")),
            Err(ServiceError::InvalidParameterValue(_))
        ));
        let r = parse("f")
            .unwrap()
            .with_query_qualifier(Some("$LATEST"))
            .unwrap();
        assert_eq!(r.qualifier.as_deref(), Some("$LATEST"));
    }
}
