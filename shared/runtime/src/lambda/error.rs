//! How the edge says what went wrong to Lambda: an `errorType` a person (or an alarm) can act
//! on and a readable message, never a Rust type name or a debug line.

use crate::config::ConfigError;
use crate::platform::PlatformSecretError;
use crate::token_key::TokenKeySecretError;
use lambda_runtime::Diagnostic;

/// Why a function could not start: posted to the Runtime API's `/init/error`.
///
/// Messages come from the errors' `Display`, which name the variable or secret at fault and
/// never carry a secret's value (`config`, `platform`, `token_key`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InitError {
    error_type: &'static str,
    message: String,
}

impl InitError {
    /// An environment variable is missing or unreadable.
    pub const INVALID_CONFIGURATION: &'static str = "InvalidConfiguration";
    /// A secret (Secrets Manager, KMS) could not be read or is not what it must be.
    pub const SECRET_UNAVAILABLE: &'static str = "SecretUnavailable";

    pub fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        InitError {
            error_type,
            message: message.into(),
        }
    }

    /// A configuration error about `variable` (an adapter refused its value): the message
    /// names the variable and the reason, as [`ConfigError::Invalid`] does.
    pub fn invalid(variable: &'static str, reason: impl std::fmt::Display) -> Self {
        ConfigError::Invalid {
            name: variable,
            reason: reason.to_string(),
        }
        .into()
    }

    pub fn error_type(&self) -> &'static str {
        self.error_type
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ConfigError> for InitError {
    fn from(e: ConfigError) -> Self {
        InitError::new(Self::INVALID_CONFIGURATION, e.to_string())
    }
}

impl From<PlatformSecretError> for InitError {
    fn from(e: PlatformSecretError) -> Self {
        match e {
            PlatformSecretError::Config(c) => c.into(),
            other => InitError::new(Self::SECRET_UNAVAILABLE, other.to_string()),
        }
    }
}

impl From<TokenKeySecretError> for InitError {
    fn from(e: TokenKeySecretError) -> Self {
        InitError::new(Self::SECRET_UNAVAILABLE, e.to_string())
    }
}

impl From<InitError> for Diagnostic {
    fn from(e: InitError) -> Self {
        Diagnostic {
            error_type: e.error_type.to_string(),
            error_message: e.message,
        }
    }
}

/// Why one invocation failed: what the handler returns to the runtime, which reports it as
/// the invocation's error with this `errorType`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvocationError {
    error_type: &'static str,
    message: String,
}

impl InvocationError {
    /// The event is not one the function handles, or cannot be read.
    pub const INVALID_INPUT: &'static str = "InvalidInput";
    /// The answer could not be written (a bug, not the input's fault).
    pub const INTERNAL: &'static str = "InternalError";

    /// `error_type` names the failure's class (`KeycrmUnavailable`, `StoreUnavailable`, …);
    /// `message` must be fit to read in the console (no secrets, no request values).
    pub fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        InvocationError {
            error_type,
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_INPUT, message)
    }

    pub fn error_type(&self) -> &'static str {
        self.error_type
    }
}

impl From<serde_json::Error> for InvocationError {
    /// Only the answer is serialized with serde_json here: failing that is internal.
    fn from(e: serde_json::Error) -> Self {
        InvocationError::new(
            Self::INTERNAL,
            format!("the answer could not be written: {e}"),
        )
    }
}

impl From<InvocationError> for Diagnostic {
    fn from(e: InvocationError) -> Self {
        Diagnostic {
            error_type: e.error_type.to_string(),
            error_message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_name_the_variable_and_their_class() {
        let e: InitError = ConfigError::Missing("TABLE_NAME").into();
        assert_eq!(e.error_type(), "InvalidConfiguration");
        assert_eq!(e.message(), "environment variable TABLE_NAME is required");
        let e = InitError::invalid("SHOP_API_BASE_URL", "relative URL without a base");
        assert_eq!(
            e.to_string(),
            "environment variable SHOP_API_BASE_URL is invalid: relative URL without a base"
        );
        let e: InitError = PlatformSecretError::Config(ConfigError::Missing("X")).into();
        assert_eq!(e.error_type(), "InvalidConfiguration");
    }

    #[test]
    fn secret_errors_say_what_is_wrong_without_the_value() {
        let e: InitError = PlatformSecretError::NotJson.into();
        assert_eq!(e.error_type(), "SecretUnavailable");
        assert_eq!(
            e.message(),
            "the platform secret is not a JSON object of strings"
        );
        let e: InitError = TokenKeySecretError::NotText.into();
        assert_eq!(e.error_type(), "SecretUnavailable");
    }

    #[test]
    fn diagnostics_carry_the_named_type_not_a_rust_type_name() {
        let d: Diagnostic = InvocationError::invalid_input("no").into();
        assert_eq!(
            (d.error_type.as_str(), d.error_message.as_str()),
            ("InvalidInput", "no")
        );
        let d: Diagnostic = InitError::from(ConfigError::Missing("A")).into();
        assert_eq!(d.error_type, "InvalidConfiguration");
        assert!(!d.error_type.contains("::"));
    }
}
