//! The runtimes Kappa accepts for zip functions.

/// Runtime identifiers accepted by CreateFunction and UpdateFunctionConfiguration.
pub const SUPPORTED_RUNTIMES: &[&str] = &[
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "provided",
    "provided.al2",
    "provided.al2023",
];

pub fn is_supported(runtime: &str) -> bool {
    SUPPORTED_RUNTIMES.contains(&runtime)
}

/// Custom runtimes find their `bootstrap` themselves, so a handler is optional for them.
pub fn is_custom(runtime: &str) -> bool {
    runtime == "provided" || runtime.starts_with("provided.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_set_only() {
        for r in [
            "python3.9",
            "python3.13",
            "nodejs18.x",
            "nodejs22.x",
            "provided.al2023",
        ] {
            assert!(is_supported(r), "{r}");
        }
        for r in [
            "python3.8",
            "python3.14",
            "nodejs16.x",
            "nodejs24.x",
            "java21",
            "go1.x",
            "",
        ] {
            assert!(!is_supported(r), "{r}");
        }
    }
}
