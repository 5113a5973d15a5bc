//! Value checks shared by both contexts.

use std::fmt;

/// A problem with one named input field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A problem with one requested line, by its position in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LineError {
    pub index: u32,
    pub product_id: String,
}

impl LineError {
    pub(crate) fn new(index: usize, product_id: &str) -> Self {
        Self {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            product_id: product_id.to_owned(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} (product {})", self.index, self.product_id)
    }
}

/// Longest identifier (order, customer, product) the rules accept.
pub const MAX_ID_LEN: usize = 64;
/// Longest product name or free-text reason.
pub const MAX_TEXT_LEN: usize = 200;
/// Largest amount of money, in minor units, a price or an order total may reach.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// Identifiers are short, printable and free of whitespace so they can be used
/// in URLs, subjects and keys unescaped.
pub fn check_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(FieldError::new(field, format!("must be at most {MAX_ID_LEN} bytes")));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(FieldError::new(
            field,
            "may contain only ASCII letters, digits and - _ . :",
        ));
    }
    Ok(())
}

pub fn check_text(field: &str, text: &str) -> Result<(), FieldError> {
    if text.trim().is_empty() {
        return Err(FieldError::new(field, "must not be blank"));
    }
    // No store keeps a NUL in text (PostgreSQL refuses it, even escaped in JSON).
    if text.contains('\0') {
        return Err(FieldError::new(field, "must not contain a NUL character"));
    }
    if text.chars().count() > MAX_TEXT_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_TEXT_LEN} characters"),
        ));
    }
    Ok(())
}

/// ISO 4217 style: three upper-case ASCII letters.
pub fn check_currency(field: &str, currency: &str) -> Result<(), FieldError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be a three-letter upper-case currency code",
        ))
    }
}

pub fn check_price(field: &str, price: i64) -> Result<(), FieldError> {
    if (0..=MAX_AMOUNT).contains(&price) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be between 0 and {MAX_AMOUNT} minor units"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_printable_and_non_empty() {
        assert!(check_id("id", "SKU-1").is_ok());
        assert!(check_id("id", "ord:2026.11_x").is_ok());
        assert_eq!(check_id("id", "").map_err(|e| e.field), Err("id".into()));
        assert!(check_id("id", "has space").is_err());
        assert!(check_id("id", &"x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_id("id", "ünïcode").is_err());
    }

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert!(check_currency("c", "KRW").is_ok());
        assert!(check_currency("c", "krw").is_err());
        assert!(check_currency("c", "KRWX").is_err());
    }

    #[test]
    fn text_is_neither_blank_nor_overlong() {
        assert!(check_text("name", "Mug").is_ok());
        assert!(check_text("name", "   ").is_err());
        assert!(check_text("name", "Mu\0g").is_err());
        assert!(check_text("name", &"é".repeat(MAX_TEXT_LEN)).is_ok());
        assert!(check_text("name", &"é".repeat(MAX_TEXT_LEN + 1)).is_err());
    }
}
