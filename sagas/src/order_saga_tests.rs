//! Tests of the purchase saga decisions.
